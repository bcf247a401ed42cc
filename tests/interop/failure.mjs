// What every interop check does when it fails: one line on stderr naming the check and the
// reason, exit status 1, also from callbacks, timers, and unexpected exceptions or rejections;
// and a hard stop after `overallMs`.

import { writeSync } from 'node:fs';

/** Installs the handlers and the watchdog; returns `fail(reason)`. */
export function failureFor(prefix, overallMs) {
  function fail(reason) {
    // synchronous write, then exit at once
    try {
      writeSync(2, `${prefix}: FAIL: ${reason}\n`);
    } finally {
      process.exit(1);
    }
  }
  process.on('uncaughtException', err => fail(`unexpected exception: ${err && err.stack ? err.stack : err}`));
  process.on('unhandledRejection', err => fail(`unexpected rejection: ${err && err.stack ? err.stack : err}`));
  setTimeout(() => fail(`overall timeout: not done after ${overallMs / 1000} s`), overallMs).unref();
  return fail;
}
