//! STOMP transactions: SENDs and ACK/NACKs named with a `transaction` header
//! are held until COMMIT (then applied in order) or ABORT (then dropped).
//! Bounded in count and in frames per transaction.

use stomp::Frame;

use super::error::StompError;

#[derive(Debug)]
struct Transaction {
    id: String,
    frames: Vec<Frame>,
}

/// The open transactions of one connection.
#[derive(Debug, Default)]
pub struct Transactions {
    open: Vec<Transaction>,
}

impl Transactions {
    pub fn begin(&mut self, id: &str, max_open: usize) -> Result<(), StompError> {
        if self.open.iter().any(|t| t.id == id) {
            return Err(StompError::new("transaction already active")
                .detail(format!("transaction '{id}' was already begun")));
        }
        if self.open.len() >= max_open {
            return Err(StompError::new("too many transactions").detail(format!(
                "at most {max_open} transactions may be open at once"
            )));
        }
        self.open.push(Transaction {
            id: id.to_string(),
            frames: Vec::new(),
        });
        Ok(())
    }

    /// Holds `frame` in transaction `id`.
    pub fn buffer(&mut self, id: &str, frame: Frame, max_frames: usize) -> Result<(), StompError> {
        let tx = self
            .open
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or_else(|| unknown(id))?;
        if tx.frames.len() >= max_frames {
            return Err(StompError::new("transaction too large").detail(format!(
                "at most {max_frames} frames may be held in one transaction"
            )));
        }
        tx.frames.push(frame);
        Ok(())
    }

    /// Ends transaction `id` and returns its frames (for COMMIT) in order.
    pub fn end(&mut self, id: &str) -> Result<Vec<Frame>, StompError> {
        let index = self
            .open
            .iter()
            .position(|t| t.id == id)
            .ok_or_else(|| unknown(id))?;
        Ok(self.open.swap_remove(index).frames)
    }
}

fn unknown(id: &str) -> StompError {
    StompError::new("unknown transaction").detail(format!("no active transaction '{id}'"))
}
