/**
 * Onbox's LSP extensions as TypeScript types (see docs/protocol.md).
 *
 * The server is the source of truth; these types only describe what the extension
 * reads. Every field the server may omit is optional so that an older or newer server
 * degrades the display instead of breaking it.
 */

/** Notification `onbox/status` (server → client). */
export const STATUS_NOTIFICATION = 'onbox/status';
/** Request `onbox/explain`. */
export const EXPLAIN_REQUEST = 'onbox/explain';
/** Request `onbox/health`. */
export const HEALTH_REQUEST = 'onbox/health';
/** Request `onbox/journalStats`. */
export const JOURNAL_STATS_REQUEST = 'onbox/journalStats';
/** Request `onbox/policyPull`. */
export const POLICY_PULL_REQUEST = 'onbox/policyPull';
/** Server command (workspace/executeCommand) that verifies the journal. */
export const VERIFY_JOURNAL_COMMAND = 'onbox.verifyJournal';
/** Server command carried by completion items; executing it journals the acceptance. */
export const ACCEPT_COMMAND = 'onbox.accept';

/** Where the server is in its life: see `state` in docs/protocol.md. */
export type ServerState = 'loading' | 'ready' | 'generating' | 'error' | 'disabled';

export interface PolicyState {
  id?: string;
  serial?: number;
  expires?: string | null;
  expired?: boolean;
}

export interface JournalState {
  ok?: boolean;
  error?: string | null;
}

/** Params of `onbox/status`; `uri: null` carries server-wide state. */
export interface OnboxStatus {
  uri: string | null;
  label?: string | null;
  destination?: string | null;
  destinationKind?: string | null;
  model?: string | null;
  /** A {@link ServerState}; a newer server may send others, shown as-is. */
  state?: string;
  message?: string;
  reasons?: string[];
  policy?: PolicyState | null;
  journal?: JournalState | null;
}

export interface ExplainReason {
  signal: string;
  label: string;
  message: string;
  source?: string | null;
}

export interface ExplainFinding {
  kind: string;
  type: string;
  line?: number;
  label?: string;
}

export interface RouteStep {
  destination: string;
  kind?: string;
  clearance?: string;
  eligible?: boolean;
  healthy?: boolean;
  why?: string;
}

/** Result of `onbox/explain`. */
export interface ExplainResult {
  uri: string;
  label: string;
  reasons?: ExplainReason[];
  findings?: ExplainFinding[];
  policy?: PolicyState | null;
  destination?: string;
  route?: RouteStep[];
  text?: string;
}

/** Result of `onbox/policyPull`. */
export interface PolicyPullResult {
  applied: boolean;
  serial?: number | null;
  message?: string;
}

/** Result of the `onbox.verifyJournal` server command. */
export interface VerifyJournalResult {
  ok: boolean;
  entries?: number;
  error?: string | null;
}

/** Result of `onbox/health`. */
export interface HealthResult {
  version?: string;
  model?: { path?: string | null; loaded?: boolean; error?: string | null; sha256?: string | null };
  gpuOffload?: boolean;
  llamaCpp?: { version?: string | null; systemInfo?: string | null };
  policy?: PolicyState & { source?: string | null; lastError?: string | null };
  journal?: { dir?: string | null; writable?: boolean; error?: string | null };
  trustRoot?: { path?: string | null; present?: boolean };
}
