/**
 * The palette commands: Explain Classification, Show Journal Stats, Verify Journal,
 * Pull Policy, Restart Server, Show Log (ids in {@link UI_COMMANDS}).
 */
import * as vscode from 'vscode';

import { UI_COMMANDS } from './commandIds';
import {
  EXPLAIN_REQUEST,
  JOURNAL_STATS_REQUEST,
  POLICY_PULL_REQUEST,
  VERIFY_JOURNAL_COMMAND,
  type ExplainResult,
  type PolicyPullResult,
  type VerifyJournalResult,
} from './protocol';
import { explainBody, page, policyPullSummary, statsBody, verifySummary } from './render';
import type { ServerSupervisor } from './supervisor';

const STATS_DAYS = 7;

class Panels {
  private readonly open = new Map<string, vscode.WebviewPanel>();

  show(key: string, title: string, body: string): void {
    let panel = this.open.get(key);
    // Onbox panels share one editor group: beside the code the first time, then wherever
    // the user has put the others.
    const column = [...this.open.values()].find((p) => p.viewColumn !== undefined)?.viewColumn ?? vscode.ViewColumn.Beside;
    if (panel === undefined) {
      panel = vscode.window.createWebviewPanel(`onbox.${key}`, title, { viewColumn: column, preserveFocus: true }, {
        enableScripts: false,
        enableFindWidget: true,
      });
      this.open.set(key, panel);
      panel.onDidDispose(() => this.open.delete(key));
    }
    panel.title = title;
    panel.webview.html = page(title, body, panel.webview.cspSource);
    panel.reveal(panel.viewColumn ?? column, true);
  }

  dispose(): void {
    for (const panel of this.open.values()) {
      panel.dispose();
    }
  }
}

function basename(uri: string): string {
  const path = vscode.Uri.parse(uri).path;
  return path.slice(path.lastIndexOf('/') + 1) || uri;
}

/** Register every UI command; `currentUri` names the document Explain explains by default. */
export function registerCommands(
  supervisor: ServerSupervisor,
  output: vscode.LogOutputChannel,
  currentUri: () => string | undefined,
): vscode.Disposable[] {
  const panels = new Panels();

  const run = (what: string, body: () => Promise<void>) => async (): Promise<void> => {
    try {
      await body();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      output.error(`${what} failed: ${message}`);
      void vscode.window.showErrorMessage(`Onbox: ${what} failed: ${message}`);
    }
  };

  const explain = async (target?: vscode.Uri): Promise<void> => {
    const uri = target instanceof vscode.Uri ? target.toString() : currentUri();
    if (uri === undefined) {
      void vscode.window.showInformationMessage('Onbox: open a file to explain its classification.');
      return;
    }
    const result = await supervisor.request<ExplainResult>(EXPLAIN_REQUEST, { uri });
    output.info(`explain ${uri}:\n${result.text ?? JSON.stringify(result)}`);
    panels.show('explain', `Onbox: ${basename(uri)} is ${result.label}`, explainBody(result));
  };

  return [
    vscode.commands.registerCommand(UI_COMMANDS.explain, (target?: vscode.Uri) => run('Explain', () => explain(target))()),
    vscode.commands.registerCommand(
      UI_COMMANDS.journalStats,
      run('Show Journal Stats', async () => {
        const stats = await supervisor.request<unknown>(JOURNAL_STATS_REQUEST, { days: STATS_DAYS });
        panels.show('journalStats', 'Onbox: journal stats', statsBody(stats, STATS_DAYS));
      }),
    ),
    vscode.commands.registerCommand(
      UI_COMMANDS.verifyJournal,
      run('Verify Journal', async () => {
        const result = await vscode.window.withProgress(
          { location: vscode.ProgressLocation.Notification, title: 'Onbox: verifying the journal…' },
          () => supervisor.executeCommand<VerifyJournalResult>(VERIFY_JOURNAL_COMMAND),
        );
        const summary = verifySummary(result);
        output.info(summary);
        if (result.ok) {
          void vscode.window.showInformationMessage(summary);
        } else {
          void vscode.window.showErrorMessage(summary);
        }
      }),
    ),
    vscode.commands.registerCommand(
      UI_COMMANDS.pullPolicy,
      run('Pull Policy', async () => {
        const result = await vscode.window.withProgress(
          { location: vscode.ProgressLocation.Notification, title: 'Onbox: pulling the policy…' },
          () => supervisor.request<PolicyPullResult>(POLICY_PULL_REQUEST, {}),
        );
        const summary = policyPullSummary(result);
        output.info(summary);
        void vscode.window.showInformationMessage(summary);
      }),
    ),
    vscode.commands.registerCommand(
      UI_COMMANDS.restartServer,
      run('Restart Server', () => supervisor.restart()),
    ),
    vscode.commands.registerCommand(UI_COMMANDS.showLog, () => {
      output.show(true);
    }),
    new vscode.Disposable(() => {
      panels.dispose();
    }),
  ];
}
