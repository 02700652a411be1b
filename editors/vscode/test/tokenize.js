#!/usr/bin/env node
// Tokenizes files with the netdsl TextMate grammar as VS Code does (vscode-textmate on the
// Oniguruma regex engine compiled to WebAssembly) and prints, per file, per line, the tokens:
//   {"files": {"PATH": [[{"text": "...", "scopes": ["source.netdsl", ...]}, ...], ...]}}
// Usage: node tokenize.js FILE...   (the grammar is ../syntaxes/netdsl.tmLanguage.json)
'use strict';
const fs = require('fs');
const path = require('path');
const vsctm = require('vscode-textmate');
const oniguruma = require('vscode-oniguruma');

const GRAMMAR = path.join(__dirname, '..', 'syntaxes', 'netdsl.tmLanguage.json');

async function loadGrammar() {
  const wasm = fs.readFileSync(require.resolve('vscode-oniguruma/release/onig.wasm')).buffer;
  await oniguruma.loadWASM(wasm);
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (sources) => new oniguruma.OnigScanner(sources),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scopeName) => {
      if (scopeName !== 'source.netdsl') return null;
      return vsctm.parseRawGrammar(fs.readFileSync(GRAMMAR, 'utf8'), GRAMMAR);
    },
  });
  return registry.loadGrammar('source.netdsl');
}

function tokenizeText(grammar, text) {
  const lines = text.split(/\r?\n/);
  let state = vsctm.INITIAL;
  return lines.map((line) => {
    const r = grammar.tokenizeLine(line, state);
    state = r.ruleStack;
    return r.tokens.map((t) => ({ text: line.substring(t.startIndex, t.endIndex), scopes: t.scopes }));
  });
}

async function main() {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    process.stderr.write('usage: node tokenize.js FILE...\n');
    process.exit(2);
  }
  const grammar = await loadGrammar();
  const out = {};
  for (const f of files) out[f] = tokenizeText(grammar, fs.readFileSync(f, 'utf8'));
  process.stdout.write(JSON.stringify({ files: out }));
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
