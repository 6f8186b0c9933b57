/**
 * The Onbox status bar item: label and destination of the active editor, spinner while
 * the model loads or generates, warning colour when the policy expired or the journal
 * fails. Clicking it runs Explain. Formatting lives in {@link formatStatus}.
 */
import * as vscode from 'vscode';

import { UI_COMMANDS } from './commandIds';
import type { HealthResult, OnboxStatus } from './protocol';
import type { ConnectionEvent } from './supervisor';
import { formatStatus, type StatusInput } from './statusFormat';

function normalizeUri(uri: string): string {
  try {
    return vscode.Uri.parse(uri, true).toString();
  } catch {
    return uri;
  }
}

interface Stamped {
  status: OnboxStatus;
  seq: number;
}

export class StatusBar implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private readonly documents = new Map<string, Stamped>();
  private server: Stamped | undefined;
  private connection: ConnectionEvent = { state: 'starting' };
  private health: HealthResult | undefined;
  private seq = 0;
  /** The document the item describes: the active text editor's, kept while a webview
   * (e.g. Explain) or another non-text editor has focus. */
  private shownUri: string | undefined;
  private readonly subscriptions: vscode.Disposable[] = [];

  constructor() {
    this.item = vscode.window.createStatusBarItem('status', vscode.StatusBarAlignment.Right, 100);
    this.item.name = 'Onbox';
    this.item.command = UI_COMMANDS.explain;
    this.subscriptions.push(
      vscode.window.onDidChangeActiveTextEditor((editor) => {
        if (editor !== undefined) {
          this.shownUri = editor.document.uri.toString();
        }
        this.render();
      }),
      vscode.workspace.onDidCloseTextDocument((doc) => {
        const uri = doc.uri.toString();
        this.documents.delete(uri);
        if (uri === this.shownUri) {
          this.shownUri = vscode.window.activeTextEditor?.document.uri.toString();
          this.render();
        }
      }),
    );
    this.shownUri = vscode.window.activeTextEditor?.document.uri.toString();
    this.render();
    this.item.show();
  }

  /** A new `onbox/status` notification. */
  update(status: OnboxStatus): void {
    this.seq += 1;
    if (status.uri === null) {
      this.server = { status, seq: this.seq };
    } else {
      this.documents.set(normalizeUri(status.uri), { status, seq: this.seq });
    }
    this.render();
  }

  setConnection(event: ConnectionEvent): void {
    this.connection = event;
    if (event.state !== 'running') {
      // The server re-sends every open document's status after it starts again.
      this.documents.clear();
      this.server = undefined;
      this.health = undefined;
    }
    this.render();
  }

  setHealth(health: HealthResult): void {
    this.health = health;
    this.render();
  }

  /** The document the item describes, if any (what Explain explains). */
  get uri(): string | undefined {
    return vscode.window.activeTextEditor?.document.uri.toString() ?? this.shownUri;
  }

  /** What the item shows now. */
  input(): StatusInput {
    const uri = vscode.window.activeTextEditor?.document.uri.toString() ?? this.shownUri;
    const doc = uri === undefined ? undefined : this.documents.get(uri);
    const input: StatusInput = { connection: this.connection.state };
    if (doc !== undefined) {
      input.document = doc.status;
    }
    if (this.server !== undefined) {
      input.server = this.server.status;
    }
    input.newest = (this.server?.seq ?? -1) > (doc?.seq ?? -1) ? 'server' : 'document';
    if (this.connection.restartInSeconds !== undefined) {
      input.restartInSeconds = this.connection.restartInSeconds;
    }
    if (this.connection.detail !== undefined) {
      input.detail = this.connection.detail;
    }
    if (this.health !== undefined) {
      input.health = this.health;
    }
    return input;
  }

  private render(): void {
    const view = formatStatus(this.input());
    this.item.text = view.text;
    const tooltip = new vscode.MarkdownString(view.tooltip);
    tooltip.isTrusted = false;
    this.item.tooltip = tooltip;
    this.item.accessibilityInformation = { label: `Onbox ${view.text.replace(/\$\([^)]*\)\s*/g, '')}` };
    this.item.backgroundColor =
      view.severity === 'error'
        ? new vscode.ThemeColor('statusBarItem.errorBackground')
        : view.severity === 'warning'
          ? new vscode.ThemeColor('statusBarItem.warningBackground')
          : undefined;
  }

  dispose(): void {
    for (const s of this.subscriptions) {
      s.dispose();
    }
    this.item.dispose();
  }
}
