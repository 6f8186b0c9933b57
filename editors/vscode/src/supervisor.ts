/**
 * Runs `onbox serve` through vscode-languageclient and keeps it running.
 *
 * The client restarts a crashed server after an exponential backoff
 * ({@link RestartBackoff}); the delay happens inside the client's `closed()` error
 * handler, which may return a promise. Server statuses and connection changes are
 * published as events for the status bar.
 */
import * as os from 'node:os';
import * as vscode from 'vscode';
import {
  CloseAction,
  ErrorAction,
  ExecuteCommandRequest,
  LanguageClient,
  State,
  TransportKind,
  type CloseHandlerResult,
  type ErrorHandler,
  type LanguageClientOptions,
  type ServerOptions,
} from 'vscode-languageclient/node';

import { RestartBackoff } from './backoff';
import { HEALTH_REQUEST, STATUS_NOTIFICATION, type HealthResult, type OnboxStatus } from './protocol';
import { isExecutable, locateServer, notFoundMessage } from './serverPath';
import {
  completionMenuEnabled,
  toLaunchSettings,
  toServerSettings,
  type PathContext,
  type ServerSettings,
} from './settings';
import type { ConnectionState } from './statusFormat';

export interface ConnectionEvent {
  state: ConnectionState;
  detail?: string;
  restartInSeconds?: number;
}

/** The server is not running; the message says what to do. */
export class ServerNotRunningError extends Error {}

function pathContext(): PathContext {
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  return folder === undefined ? { home: os.homedir() } : { home: os.homedir(), workspaceFolder: folder };
}

/** The current `onbox` settings in the server's shape. */
export function currentServerSettings(): ServerSettings {
  const config = vscode.workspace.getConfiguration('onbox');
  return toServerSettings((key) => config.get(key), pathContext());
}

export class ServerSupervisor implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private readonly backoff = new RestartBackoff();
  private disposed = false;
  private cancelWait: (() => void) | undefined;
  private readonly statusEmitter = new vscode.EventEmitter<OnboxStatus>();
  private readonly connectionEmitter = new vscode.EventEmitter<ConnectionEvent>();
  private readonly healthEmitter = new vscode.EventEmitter<HealthResult>();
  /** Every `onbox/status` the server sends. */
  readonly onStatus = this.statusEmitter.event;
  /** Connection state changes (starting, running, restarting, stopped, not found). */
  readonly onConnection = this.connectionEmitter.event;
  /** Fresh `onbox/health` answers. */
  readonly onHealth = this.healthEmitter.event;

  constructor(private readonly output: vscode.LogOutputChannel) {}

  /** Locate the executable and start the server; failures are shown, not thrown. */
  async start(): Promise<void> {
    if (this.disposed || this.client !== undefined) {
      return;
    }
    const config = vscode.workspace.getConfiguration('onbox');
    const ctx = pathContext();
    const launch = toLaunchSettings((key) => config.get(key), ctx);
    const locateInput = {
      configured: launch.path,
      workspaceFolders: (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath),
      workspaceTrusted: vscode.workspace.isTrusted,
      env: process.env,
      isExecutable,
    };
    const located = locateServer(locateInput);
    if (located === undefined) {
      const message = notFoundMessage(locateInput);
      this.output.error(message);
      this.connectionEmitter.fire({ state: 'notFound', detail: message });
      void vscode.window.showErrorMessage(message, 'Open Settings').then((choice) => {
        if (choice === 'Open Settings') {
          void vscode.commands.executeCommand('workbench.action.openSettings', 'onbox.server.path');
        }
      });
      return;
    }
    this.output.info(`starting ${located.path} ${[...launch.args, 'serve'].join(' ')} (found via ${located.source})`);
    const serverOptions: ServerOptions = {
      command: located.path,
      args: [...launch.args, 'serve'],
      transport: TransportKind.stdio,
      options: { env: { ...process.env, ...launch.env }, cwd: ctx.workspaceFolder ?? os.homedir() },
    };
    const clientOptions: LanguageClientOptions = {
      documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
      outputChannel: this.output,
      initializationOptions: () => currentServerSettings(),
      errorHandler: this.errorHandler(),
      middleware: {
        provideCompletionItem: (document, position, context, token, next) => {
          const config = vscode.workspace.getConfiguration('onbox');
          return completionMenuEnabled((key) => config.get(key)) ? next(document, position, context, token) : undefined;
        },
        workspace: {
          // Answer `workspace/configuration` for `onbox` in the server's shape, without
          // the extension-only keys (server.*, trace.*) the server would flag as unknown.
          configuration: async (params, token, next) => {
            const answers = await next(params, token);
            if (!Array.isArray(answers)) {
              return answers;
            }
            return params.items.map((item, i): unknown =>
              item.section === 'onbox' ? currentServerSettings() : answers[i],
            );
          },
        },
      },
    };
    const client = new LanguageClient('onbox', 'Onbox', serverOptions, clientOptions);
    this.client = client;
    client.onNotification(STATUS_NOTIFICATION, (status: OnboxStatus) => {
      this.statusEmitter.fire(status);
      if (status.uri === null) {
        this.refreshHealth();
      }
    });
    client.onDidChangeState((event) => {
      if (event.newState === State.Running) {
        this.backoff.started(Date.now());
        this.connectionEmitter.fire({ state: 'running' });
        this.refreshHealth();
      } else if (event.newState === State.Starting) {
        this.connectionEmitter.fire({ state: 'starting' });
      }
    });
    this.connectionEmitter.fire({ state: 'starting' });
    try {
      await client.start();
    } catch (error) {
      // A crash during start is handled by closed(); anything else stops here.
      this.output.error(`the server failed to start: ${String(error)}`);
      if (client.state === State.Stopped && this.client === client) {
        this.connectionEmitter.fire({ state: 'stopped', detail: `The server failed to start: ${String(error)}` });
      }
    }
  }

  private errorHandler(): ErrorHandler {
    return {
      error: (error, _message, count): { action: ErrorAction } => {
        this.output.error(`connection error (${String(count ?? 1)}): ${error.message}`);
        return { action: (count ?? 1) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown };
      },
      closed: async (): Promise<CloseHandlerResult> => {
        if (this.disposed) {
          return { action: CloseAction.DoNotRestart, handled: true };
        }
        const delay = this.backoff.nextDelay(Date.now());
        if (delay === undefined) {
          const message = `The Onbox server exited ${String(this.backoff.attemptCount)} times in a row; not restarting. See the Onbox output channel, fix the cause, then run Onbox: Restart Server.`;
          this.connectionEmitter.fire({ state: 'stopped', detail: message });
          return { action: CloseAction.DoNotRestart, message };
        }
        this.output.warn(`the server exited; restarting in ${String(delay)} ms`);
        this.connectionEmitter.fire({ state: 'restarting', restartInSeconds: Math.ceil(delay / 1000) });
        const waited = await this.wait(delay);
        if (!waited || this.isDisposed()) {
          return { action: CloseAction.DoNotRestart, handled: true };
        }
        return { action: CloseAction.Restart, handled: true };
      },
    };
  }

  /** Sleep `ms`; false if cancelled by a manual restart or dispose. */
  private wait(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.cancelWait = undefined;
        resolve(true);
      }, ms);
      this.cancelWait = () => {
        clearTimeout(timer);
        this.cancelWait = undefined;
        resolve(false);
      };
    });
  }

  private isDisposed(): boolean {
    return this.disposed;
  }

  private refreshHealth(): void {
    const client = this.client;
    if (client?.state !== State.Running) {
      return;
    }
    client.sendRequest<HealthResult>(HEALTH_REQUEST, {}).then(
      (health) => {
        this.healthEmitter.fire(health);
      },
      (error: unknown) => {
        this.output.warn(`onbox/health failed: ${String(error)}`);
      },
    );
  }

  /** Stop the server and forget the client (and any pending automatic restart). */
  async stop(): Promise<void> {
    this.cancelWait?.();
    const client = this.client;
    this.client = undefined;
    if (client === undefined) {
      return;
    }
    try {
      if (client.isRunning()) {
        await client.stop(5000);
      }
    } catch (error) {
      this.output.warn(`stopping the server: ${String(error)}`);
    }
    await client.dispose().catch(() => undefined);
  }

  /** A restart the user asked for: fresh backoff, fresh executable lookup. */
  async restart(): Promise<void> {
    this.output.info('restarting the server');
    await this.stop();
    this.backoff.reset();
    await this.start();
  }

  /** Push changed settings to a running server. */
  async sendSettings(): Promise<void> {
    const client = this.client;
    if (client?.state === State.Running) {
      await client.sendNotification('workspace/didChangeConfiguration', {
        settings: { onbox: currentServerSettings() },
      });
    }
  }

  private running(): LanguageClient {
    const client = this.client;
    if (client?.state !== State.Running) {
      throw new ServerNotRunningError(
        'The Onbox server is not running. Run "Onbox: Restart Server", or see the Onbox output channel for why it stopped.',
      );
    }
    return client;
  }

  /** Send an Onbox request to the running server. */
  request<R>(method: string, params: object): Promise<R> {
    return this.running().sendRequest<R>(method, params);
  }

  /** Run a server command (`workspace/executeCommand`). */
  async executeCommand<R>(command: string, args: unknown[] = []): Promise<R> {
    const result: unknown = await this.running().sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
    return result as R;
  }

  dispose(): void {
    this.disposed = true;
    void this.stop();
    this.statusEmitter.dispose();
    this.connectionEmitter.dispose();
    this.healthEmitter.dispose();
  }
}
