/**
 * Ids of the commands this extension contributes (package.json must list exactly
 * these; a unit test checks). They are `onbox.ui.*` because the language client
 * registers the server's own commands (`onbox.explain`, `onbox.accept`, …) under
 * their bare names.
 */
export const UI_COMMANDS = {
  explain: 'onbox.ui.explain',
  journalStats: 'onbox.ui.journalStats',
  verifyJournal: 'onbox.ui.verifyJournal',
  pullPolicy: 'onbox.ui.pullPolicy',
  restartServer: 'onbox.ui.restartServer',
  showLog: 'onbox.ui.showLog',
} as const;
