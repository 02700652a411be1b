// The netdsl extension: the language is declared in package.json (grammar, brackets, comments);
// this starts `netdsl lsp` over stdio and restarts it when its settings change.
'use strict';
const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

let client;

function settings() {
  const config = vscode.workspace.getConfiguration('netdsl');
  return { path: config.get('path') || 'netdsl', inlayHints: config.get('inlayHints', false) };
}

async function start() {
  const { path, inlayHints } = settings();
  const serverOptions = { command: path, args: ['lsp'], transport: TransportKind.stdio };
  const clientOptions = {
    documentSelector: [{ scheme: 'file', language: 'netdsl' }, { scheme: 'untitled', language: 'netdsl' }],
    // Read once at start; later changes arrive as workspace/didChangeConfiguration (section `netdsl`).
    initializationOptions: { inlayHints },
    synchronize: { configurationSection: 'netdsl' },
  };
  client = new LanguageClient('netdsl', 'netdsl language server', serverOptions, clientOptions);
  try {
    await client.start();
  } catch (err) {
    client = undefined;
    vscode.window.showErrorMessage(
      `netdsl: could not start \`${path} lsp\` (${err && err.message ? err.message : err}). ` +
      "Install it with `pip install 'netdsl[lsp]'` or set `netdsl.path` to the executable.");
  }
}

async function stop() {
  if (client) {
    const c = client;
    client = undefined;
    await c.stop();
  }
}

async function activate(context) {
  context.subscriptions.push(vscode.workspace.onDidChangeConfiguration(async (event) => {
    // A new executable or initialization option needs a new server process.
    if (event.affectsConfiguration('netdsl.path') || event.affectsConfiguration('netdsl.inlayHints')) {
      await stop();
      await start();
    }
  }));
  context.subscriptions.push(vscode.commands.registerCommand('netdsl.restartServer', async () => {
    await stop();
    await start();
  }));
  await start();
}

function deactivate() {
  return stop();
}

module.exports = { activate, deactivate };
