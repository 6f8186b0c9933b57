/**
 * Onbox for VS Code: starts `onbox serve`, shows each file's label and destination in
 * the status bar, and serves inline (ghost text) completions through the language
 * client's `textDocument/inlineCompletion` support. Accepting a completion runs the
 * item's `onbox.accept` command, which the client forwards to the server as
 * `workspace/executeCommand` so the acceptance is journaled.
 */
import * as vscode from 'vscode';

import { registerCommands } from './commands';
import { settingsChange } from './settings';
import { StatusBar } from './statusBar';
import { ServerSupervisor } from './supervisor';

let supervisor: ServerSupervisor | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const output = vscode.window.createOutputChannel('Onbox', { log: true });
  const statusBar = new StatusBar();
  const server = new ServerSupervisor(output);
  supervisor = server;
  context.subscriptions.push(
    output,
    statusBar,
    server,
    server.onStatus((status) => {
      statusBar.update(status);
    }),
    server.onConnection((event) => {
      statusBar.setConnection(event);
    }),
    server.onHealth((health) => {
      statusBar.setHealth(health);
    }),
    ...registerCommands(server, output, () => statusBar.uri),
    vscode.workspace.onDidGrantWorkspaceTrust(() => {
      // The workspace's own virtual environment may now be searched for `onbox`.
      void server.restart();
    }),
    vscode.workspace.onDidChangeConfiguration((event) => {
      const change = settingsChange((section) => event.affectsConfiguration(section));
      if (change === 'restart') {
        void server.restart();
      } else if (change === 'send') {
        void server.sendSettings();
      }
    }),
  );
  await server.start();
}

export async function deactivate(): Promise<void> {
  const current = supervisor;
  supervisor = undefined;
  await current?.stop();
}
