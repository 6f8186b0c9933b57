/**
 * What the status bar item shows, computed from `onbox/status` notifications.
 *
 * Pure: no `vscode` import. The text uses VS Code's `$(icon)` syntax; the tooltip is
 * Markdown with every server-provided string escaped.
 */
import type { HealthResult, JournalState, OnboxStatus, PolicyState } from './protocol';

/** The language client's connection, as the status item sees it. */
export type ConnectionState = 'starting' | 'running' | 'restarting' | 'stopped' | 'notFound';

export type Severity = 'normal' | 'warning' | 'error';

export interface StatusInput {
  connection: ConnectionState;
  /** Latest status for the active editor's document, if any. */
  document?: OnboxStatus;
  /** Latest server-wide status (`uri: null`), if any. */
  server?: OnboxStatus;
  /** Which of `document`/`server` arrived last; its policy/journal state wins. */
  newest?: 'document' | 'server';
  /** Seconds until the next restart, while `connection` is `restarting`. */
  restartInSeconds?: number;
  /** Why the connection is stopped or the server was not found. */
  detail?: string;
  /** Latest `onbox/health` answer, for the tooltip's last line. */
  health?: HealthResult;
}

export interface StatusView {
  text: string;
  /** Markdown. */
  tooltip: string;
  severity: Severity;
  spinning: boolean;
}

const LABEL_ICONS: Record<string, string> = {
  restricted: '$(lock)',
  internal: '$(shield)',
  public: '$(globe)',
};

const SPINNER = '$(loading~spin)';

/** Escape text for VS Code Markdown (also stops `$(icon)` expansion). */
export function escapeMarkdown(text: string): string {
  return text.replace(/[\\`*_{}[\]()<>#+\-.!|~$@]/g, (c) => `\\${c}`);
}

/** The icon of a label; unknown labels from a custom policy get a generic tag. */
export function labelIcon(label: string): string {
  return LABEL_ICONS[label] ?? '$(tag)';
}

function effectiveState(input: StatusInput): string {
  const server = input.server?.state;
  // Server-wide loading/error/disabled outranks a document's stale "ready".
  if (server === 'loading' || server === 'error' || server === 'disabled') {
    return server;
  }
  return input.document?.state ?? server ?? 'ready';
}

function pick<T>(input: StatusInput, get: (s: OnboxStatus) => T | null | undefined): T | undefined {
  const doc = input.document ? get(input.document) ?? undefined : undefined;
  const srv = input.server ? get(input.server) ?? undefined : undefined;
  if (input.newest === 'server') {
    return srv ?? doc;
  }
  return doc ?? srv;
}

/** Whether the policy has expired, as far as the newest status says. */
export function policyExpired(policy: PolicyState | undefined): boolean {
  return policy?.expired === true;
}

/** Whether the journal is failing, as far as the newest status says. */
export function journalFailing(journal: JournalState | undefined): boolean {
  return journal?.ok === false;
}

function policyLine(policy: PolicyState | undefined): string {
  if (policy === undefined) {
    return 'Policy: unknown';
  }
  const id = escapeMarkdown(policy.id ?? 'unknown');
  const serial = policy.serial !== undefined ? ` (serial ${String(policy.serial)})` : '';
  let expires = '';
  if (policy.expired === true) {
    expires = ' — **expired**: pull a new policy (Onbox: Pull Policy) or ask your admin';
  } else if (policy.expires) {
    expires = `, expires ${escapeMarkdown(policy.expires)}`;
  }
  return `Policy: ${id}${serial}${expires}`;
}

function journalLine(journal: JournalState | undefined): string {
  if (journal === undefined) {
    return 'Journal: unknown';
  }
  if (journal.ok === false) {
    const why = journal.error ? `: ${escapeMarkdown(journal.error)}` : '';
    return `Journal: **failing**${why} — nothing leaves the machine until it is writable again`;
  }
  return 'Journal: ok';
}

/** One tooltip line from `onbox/health`, or undefined when there is none yet. */
export function healthLine(health: HealthResult | undefined): string | undefined {
  if (health === undefined) {
    return undefined;
  }
  const parts = [`Server: onbox ${escapeMarkdown(health.version ?? '?')}`];
  if (health.model !== undefined) {
    if (health.model.error) {
      parts.push(`model error: ${escapeMarkdown(health.model.error)}`);
    } else {
      parts.push(health.model.loaded === true ? 'model loaded' : 'model not loaded');
    }
  }
  if (health.gpuOffload !== undefined) {
    parts.push(health.gpuOffload ? 'GPU offload' : 'CPU only');
  }
  if (health.trustRoot?.present === false) {
    parts.push('no trust root (built-in fail-closed policy)');
  }
  return parts.join(' · ');
}

function connectionView(input: StatusInput): StatusView | undefined {
  const detail = input.detail ? `\n\n${escapeMarkdown(input.detail)}` : '';
  switch (input.connection) {
    case 'starting':
      return { text: `${SPINNER} onbox`, tooltip: `**Onbox**: starting the server…${detail}`, severity: 'normal', spinning: true };
    case 'restarting': {
      const when = input.restartInSeconds !== undefined ? ` in ${String(input.restartInSeconds)} s` : '';
      return {
        text: '$(debug-disconnect) onbox: restarting',
        tooltip: `**Onbox**: the server exited; restarting${when}. See the Onbox output channel.${detail}`,
        severity: 'warning',
        spinning: false,
      };
    }
    case 'stopped':
      return {
        text: '$(circle-slash) onbox: stopped',
        tooltip: `**Onbox**: the server is stopped. Run **Onbox: Restart Server** after fixing the cause in the Onbox output channel.${detail}`,
        severity: 'error',
        spinning: false,
      };
    case 'notFound':
      return { text: '$(error) onbox: not found', tooltip: `**Onbox**: server not found.${detail}`, severity: 'error', spinning: false };
    case 'running':
      return undefined;
  }
}

/** The status bar item for the given state. */
export function formatStatus(input: StatusInput): StatusView {
  const early = connectionView(input);
  if (early !== undefined) {
    return early;
  }
  const state = effectiveState(input);
  const spinning = state === 'loading' || state === 'generating';
  const policy = pick(input, (s) => s.policy);
  const journal = pick(input, (s) => s.journal);
  let severity: Severity = policyExpired(policy) || journalFailing(journal) ? 'warning' : 'normal';
  const message = [input.document?.message, input.server?.message].find((m) => m !== undefined && m !== '') ?? '';
  if (state === 'error') {
    severity = 'error';
  }

  const lines: string[] = [];
  const doc = input.document;
  let text: string;
  if (doc?.label) {
    const destination = doc.destination ?? 'none';
    let icon = labelIcon(doc.label);
    if (spinning) {
      icon = SPINNER;
    } else if (state === 'error') {
      icon = '$(error)';
    } else if (state === 'disabled') {
      icon = '$(circle-slash)';
    }
    text = `${icon} ${doc.label} · ${destination}`;
    lines.push(`**Onbox**: ${escapeMarkdown(doc.label)} → ${escapeMarkdown(destination)}`);
    const model = doc.model ?? input.server?.model;
    const kind = doc.destinationKind ? ` (${escapeMarkdown(doc.destinationKind)})` : '';
    lines.push(`Model: ${model ? escapeMarkdown(model) : 'none'}${kind} · ${escapeMarkdown(state)}`);
    const reasons = doc.reasons ?? [];
    if (reasons.length > 0) {
      lines.push(`Why ${escapeMarkdown(doc.label)}:\n${reasons.map((r) => `- ${escapeMarkdown(r)}`).join('\n')}`);
    }
  } else {
    const icon = spinning ? SPINNER : state === 'error' ? '$(error)' : '$(shield)';
    text = state === 'loading' ? `${icon} onbox: loading model` : `${icon} onbox`;
    lines.push(`**Onbox**: ${escapeMarkdown(state)}`);
    lines.push('No label for this editor (Onbox labels files and untitled buffers).');
  }
  if (message) {
    lines.push(`${state === 'error' ? '**Error**: ' : ''}${escapeMarkdown(message)}`);
  }
  lines.push(policyLine(policy));
  lines.push(journalLine(journal));
  const health = healthLine(input.health);
  if (health !== undefined) {
    lines.push(health);
  }
  lines.push('_Click for the full explanation._');
  return { text, tooltip: lines.join('\n\n'), severity, spinning };
}
