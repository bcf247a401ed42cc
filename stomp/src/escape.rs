//! Header value escaping of STOMP 1.1/1.2: `\r`, `\n`, `:` and `\` are written
//! as `\r`, `\n`, `\c` and `\\`. Any other backslash sequence is a fatal
//! protocol error when decoding.

use bytes::BufMut;

/// True when `value` contains a byte that must be escaped.
pub fn needs_escaping(value: &[u8]) -> bool {
    value
        .iter()
        .any(|b| matches!(b, b'\r' | b'\n' | b':' | b'\\'))
}

/// Appends `value` to `dst`, escaped.
pub fn escape_into(value: &[u8], dst: &mut impl BufMut) {
    let mut start = 0;
    for (i, b) in value.iter().enumerate() {
        let replacement: &[u8] = match b {
            b'\r' => b"\\r",
            b'\n' => b"\\n",
            b':' => b"\\c",
            b'\\' => b"\\\\",
            _ => continue,
        };
        dst.put_slice(&value[start..i]);
        dst.put_slice(replacement);
        start = i + 1;
    }
    dst.put_slice(&value[start..]);
}

/// Length of `value` once escaped.
pub fn escaped_len(value: &[u8]) -> usize {
    value.len()
        + value
            .iter()
            .filter(|b| matches!(b, b'\r' | b'\n' | b':' | b'\\'))
            .count()
}

/// Undoes [`escape_into`]. Returns `None` on an undefined escape sequence
/// (including a trailing lone backslash).
pub fn unescape(value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.iter();
    while let Some(&b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        out.push(match bytes.next()? {
            b'r' => b'\r',
            b'n' => b'\n',
            b'c' => b':',
            b'\\' => b'\\',
            _ => return None,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_four_special_bytes() {
        let mut out = Vec::new();
        escape_into(b"a:b\\c\r\nd", &mut out);
        assert_eq!(out, b"a\\cb\\\\c\\r\\nd");
        assert_eq!(escaped_len(b"a:b\\c\r\nd"), out.len());
    }

    #[test]
    fn unescape_rejects_undefined_sequences() {
        assert_eq!(unescape(b"a\\tb"), None);
        assert_eq!(unescape(b"trailing\\"), None);
        assert_eq!(unescape(b"x\\c\\\\").unwrap(), b"x:\\");
    }
}
