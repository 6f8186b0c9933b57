/**
 * HTML for the Explain and Journal Stats webviews, and one-line summaries for
 * notifications. Pure (no `vscode` import); every server string is HTML-escaped and
 * the page allows no scripts.
 */
import type { ExplainResult, PolicyPullResult, VerifyJournalResult } from './protocol';

/** Escape text for HTML element content and attribute values. */
export function escapeHtml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

function cell(value: unknown): string {
  if (value === null || value === undefined || value === '') {
    return '<td class="none">—</td>';
  }
  if (typeof value === 'boolean') {
    return `<td>${value ? 'yes' : 'no'}</td>`;
  }
  return `<td>${escapeHtml(typeof value === 'string' ? value : JSON.stringify(value))}</td>`;
}

function table(headers: string[], rows: unknown[][]): string {
  const head = headers.map((h) => `<th>${escapeHtml(h)}</th>`).join('');
  const body = rows.map((r) => `<tr>${r.map(cell).join('')}</tr>`).join('\n');
  return `<table><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

/** A full HTML page with a strict CSP (no scripts); `cspSource` is the webview's. */
export function page(title: string, body: string, cspSource: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src ${cspSource} 'unsafe-inline';">
<title>${escapeHtml(title)}</title>
<style>
body { font-family: var(--vscode-font-family); color: var(--vscode-foreground); padding: 0 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid var(--vscode-panel-border, #8884); padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.none { opacity: 0.6; }
.label { font-size: 1.4em; font-weight: 600; }
pre { background: var(--vscode-textCodeBlock-background); padding: 0.8em; white-space: pre-wrap; }
</style>
</head>
<body>
${body}
</body>
</html>`;
}

/** The body of the Explain webview. */
export function explainBody(result: ExplainResult): string {
  const parts: string[] = [];
  const destination = result.destination ?? 'none';
  parts.push(`<h1>Onbox: why this file is <span class="label" id="label">${escapeHtml(result.label)}</span></h1>`);
  parts.push(`<p>Completions go to <strong id="destination">${escapeHtml(destination)}</strong>.</p>`);
  parts.push(`<p class="uri">${escapeHtml(result.uri)}</p>`);
  const reasons = result.reasons ?? [];
  parts.push('<h2>Reasons</h2>');
  parts.push(
    reasons.length > 0
      ? table(['signal', 'label', 'reason', 'source'], reasons.map((r) => [r.signal, r.label, r.message, r.source]))
      : '<p>No signal raised the label; the policy default applies.</p>',
  );
  const findings = result.findings ?? [];
  if (findings.length > 0) {
    parts.push('<h2>Findings in the text</h2>');
    parts.push(table(['kind', 'type', 'line', 'label'], findings.map((f) => [f.kind, f.type, f.line, f.label])));
  }
  const route = result.route ?? [];
  if (route.length > 0) {
    parts.push('<h2>Route</h2>');
    parts.push(
      table(
        ['destination', 'kind', 'clearance', 'eligible', 'healthy', 'why'],
        route.map((s) => [s.destination, s.kind, s.clearance, s.eligible, s.healthy, s.why]),
      ),
    );
  }
  if (result.policy) {
    const serial = result.policy.serial !== undefined ? ` (serial ${String(result.policy.serial)})` : '';
    parts.push(`<p>Policy: ${escapeHtml(result.policy.id ?? 'unknown')}${escapeHtml(serial)}</p>`);
  }
  if (result.text) {
    parts.push(`<h2>As text</h2><pre>${escapeHtml(result.text)}</pre>`);
  }
  return parts.join('\n');
}

/** Flatten nested JSON into `a.b.c → value` rows (arrays of scalars stay whole). */
export function flatten(value: unknown, prefix = ''): [string, unknown][] {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const rows: [string, unknown][] = [];
    for (const [key, inner] of Object.entries(value as Record<string, unknown>)) {
      rows.push(...flatten(inner, prefix === '' ? key : `${prefix}.${key}`));
    }
    return rows;
  }
  if (Array.isArray(value) && value.some((v) => v !== null && typeof v === 'object')) {
    return value.flatMap((v, i) => flatten(v, `${prefix}[${String(i)}]`));
  }
  return [[prefix === '' ? 'value' : prefix, value]];
}

/** The body of the Journal Stats webview; the stats shape is the CLI's `--json`. */
export function statsBody(stats: unknown, days: number): string {
  const rows = flatten(stats);
  return [
    `<h1>Onbox journal: last ${String(days)} days</h1>`,
    rows.length > 0 ? table(['what', 'value'], rows) : '<p>The journal has no entries in this period.</p>',
  ].join('\n');
}

/** One line for a notification after Verify Journal. */
export function verifySummary(result: VerifyJournalResult): string {
  const n = result.entries ?? 0;
  if (result.ok) {
    return `Onbox journal verified: ${String(n)} entries, chain and signatures intact.`;
  }
  return `Onbox journal verification FAILED: ${result.error ?? 'unknown error'} (${String(n)} entries checked). Keep the journal as it is and tell your security team.`;
}

/** One line for a notification after Pull Policy. */
export function policyPullSummary(result: PolicyPullResult): string {
  const message = result.message ? `: ${result.message}` : '';
  if (result.applied) {
    const serial = result.serial !== undefined && result.serial !== null ? ` serial ${String(result.serial)}` : '';
    return `Onbox applied policy${serial}${message}`;
  }
  return `Onbox policy unchanged${message}`;
}
