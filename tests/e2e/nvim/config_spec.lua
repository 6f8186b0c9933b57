-- Checks how setup() turns options into the LSP config, the statusline text and the
-- suggestion splitting, without a server. Loads the plugin the way lazy.nvim does
-- (runtimepath + plugin/ files + main module's setup). Run:
--   nvim --headless --clean -l config_spec.lua <plugin dir>
-- Prints one line per failed check and exits 1 if any failed.
local plugin_dir = assert(_G.arg[1], 'usage: nvim -l config_spec.lua <plugin dir>')
vim.opt.rtp:prepend(plugin_dir)
vim.cmd.runtime('plugin/onbox.lua')

local failures = {}
local function check(name, ok, detail)
  if not ok then
    table.insert(failures, ('%s: %s'):format(name, vim.inspect(detail)))
  end
end

check('commands exist before setup()', vim.fn.exists(':OnboxExplain') == 2, nil)
check('server not enabled before setup()', not vim.lsp.is_enabled('onbox'), nil)

local onbox = require('onbox')
onbox.setup({
  cmd = { 'sh', '-c', 'exit 0' },
  filetypes = { 'python' },
  settings = { completion = { maxTokens = 8 }, policy = { path = '/etc/onbox/policy.toml' } },
  keymaps = { accept_word = false },
})
local cfg = vim.lsp.config.onbox
check('enabled', vim.lsp.is_enabled('onbox'), nil)
check('cmd', vim.deep_equal(cfg.cmd, { 'sh', '-c', 'exit 0' }), cfg.cmd)
check('filetypes replaced, not merged', vim.deep_equal(cfg.filetypes, { 'python' }), cfg.filetypes)
check('root markers', vim.deep_equal(cfg.root_markers, { '.git' }), cfg.root_markers)
check('initializationOptions', vim.tbl_get(cfg, 'init_options', 'completion', 'maxTokens') == 8, cfg.init_options)
check(
  'workspace/configuration section',
  vim.tbl_get(cfg, 'settings', 'onbox', 'policy', 'path') == '/etc/onbox/policy.toml',
  cfg.settings
)
check('status handler', type(cfg.handlers['onbox/status']) == 'function', cfg.handlers)
check('inline completion capability', vim.tbl_get(cfg, 'capabilities', 'textDocument', 'inlineCompletion') ~= nil, cfg.capabilities)
check('other defaults kept', onbox.options.keymaps.accept == '<Tab>' and onbox.options.keymaps.accept_word == false, onbox.options.keymaps)

-- A second setup() replaces lists and can attach to every filetype.
onbox.setup({ filetypes = false })
-- Empty settings reach the server as JSON objects, never as arrays.
local sent = vim.json.encode(vim.lsp.config.onbox.init_options)
check('empty settings are an object', sent == '{}', sent)
local wc = vim.json.encode(vim.lsp.config.onbox.settings)
check('empty configuration section is an object', wc == '{"onbox":{}}', wc)
onbox.setup({ settings = { journal = {}, policy = { sources = {} } } })
local nested = vim.json.decode(vim.json.encode(vim.lsp.config.onbox.init_options))
check(
  'nested empty sections are objects, lists stay lists',
  vim.json.encode(vim.lsp.config.onbox.init_options):find('"journal":{}', 1, true)
    and vim.json.encode(vim.lsp.config.onbox.init_options):find('"sources":[]', 1, true),
  nested
)
onbox.setup({ filetypes = false })
check('filetypes = false means all', vim.lsp.config.onbox.filetypes == nil, vim.lsp.config.onbox.filetypes)
check('cmd back to default', vim.deep_equal(vim.lsp.config.onbox.cmd, { 'onbox', 'serve' }), vim.lsp.config.onbox.cmd)
check('bad option rejected', not pcall(onbox.setup, { ghost = { debounce_ms = 'soon' } }), nil)

-- Statusline text from onbox/status notifications and the server's exit.
local state = require('onbox.state')
local buf = vim.api.nvim_create_buf(true, false)
vim.api.nvim_buf_set_name(buf, vim.fn.tempname() .. '.py')
local uri = vim.uri_from_bufnr(buf)
check('empty before any status', onbox.status(buf) == '', onbox.status(buf))
state.on_status(nil, { uri = uri, label = 'internal', destination = 'corp', state = 'ready' }, {})
check('label → destination', onbox.status(buf) == 'internal → corp', onbox.status(buf))
state.on_status(nil, { uri = vim.NIL, state = 'loading' }, {})
check('server loading', onbox.status(buf) == 'internal → corp · loading model', onbox.status(buf))
state.on_status(nil, { uri = vim.NIL, state = 'ready' }, {})
state.on_status(nil, { uri = uri, label = 'internal', destination = 'corp', state = 'generating' }, {})
check('generating', onbox.status(buf) == 'internal → corp · generating', onbox.status(buf))
state.on_status(nil, {
  uri = uri, label = 'restricted', destination = 'on-box', state = 'ready',
  policy = { id = 'acme', serial = 3, expired = true },
}, {})
check('expired policy', onbox.status(buf) == 'restricted → on-box · policy expired', onbox.status(buf))
state.on_status(nil, { uri = uri, label = 'internal', destination = 'corp', state = 'generating' }, {})
state.on_exit(1, 0, 1)
check('crash', onbox.status(buf) == 'internal → corp · error: server exited (code 1)', onbox.status(buf))
state.on_init()
check('restart clears the error', not onbox.status(buf):find('error'), onbox.status(buf))

-- Journal entries as :OnboxJournal lists them.
local entry_line = require('onbox.commands').entry_line
local line = entry_line({
  seq = 12, time = '2026-11-27T05:43:23.031620Z', kind = 'completion',
  body = { label = 'internal', destination = { name = 'corp', kind = 'openai' }, outcome = 'served',
           uri = 'file:///repo/src/app.py', error = vim.NIL },
})
check('journal entry line', line == '   12  2026-11-27 05:43:23  completion     internal · corp · served · app.py', line)

-- How accept line / word split a suggestion.
local take = require('onbox.ghost').take
local cases = {
  { '  total(a, b)', 'word', '  total' },
  { '(a, b)', 'word', '(' },
  { 'a + b\n    return x', 'line', 'a + b' },
  { '\n    return x\nmore', 'line', '\n    return x' },
  { 'a + b\nc', 'whole', 'a + b\nc' },
}
for _, c in ipairs(cases) do
  local got = take(c[1], c[2])
  check(('take(%q, %s)'):format(c[1], c[2]), got == c[3], got)
end

-- A missing server executable is reported instead of silently starting nothing.
local notified = {}
local notify = vim.notify
vim.notify = function(msg, level)
  table.insert(notified, { msg, level })
end
onbox.setup({ cmd = { 'onbox-not-installed-here', 'serve' } })
vim.notify = notify
check(
  'missing executable reported',
  #notified == 1 and notified[1][1]:find('onbox-not-installed-here', 1, true) and notified[1][2] == vim.log.levels.WARN,
  notified
)

-- Keys fall back to what they did before Onbox when no suggestion is on screen.
onbox.setup({ completion_menu = { enabled = false } })
vim.g.global_tab = 0
vim.keymap.set('i', '<Tab>', function()
  vim.g.global_tab = vim.g.global_tab + 1
end)
local kbuf = vim.api.nvim_create_buf(true, false)
vim.api.nvim_set_current_buf(kbuf)
require('onbox.client').on_attach({ id = 0 }, kbuf)
local mapped = vim.fn.maparg('<Tab>', 'i', false, true)
check('<Tab> mapped in the buffer', mapped.buffer == 1 and mapped.desc == 'Onbox: accept suggestion', mapped)
-- A second attach (the server restarted) keeps the original fallback.
require('onbox.client').on_attach({ id = 0 }, kbuf)
vim.api.nvim_feedkeys(vim.keycode('ix<Tab>y<M-w>z<Esc>'), 'xt', false)
check('<Tab> without a suggestion runs the previous mapping', vim.g.global_tab == 1, vim.g.global_tab)
local typed = vim.api.nvim_buf_get_lines(kbuf, 0, -1, false)
check('no literal tab when the previous mapping handled it', typed[1]:sub(1, 2) == 'xy', typed)
-- <C-]> was not mapped before Onbox: without a suggestion it is fed as itself (noremap).
vim.api.nvim_feedkeys(vim.keycode('A<C-]>w<Esc>'), 'xt', false)
typed = vim.api.nvim_buf_get_lines(kbuf, 0, -1, false)
check('unmapped-before keys still work', typed[1]:sub(-1) == 'w' and vim.api.nvim_get_mode().mode == 'n', typed)

for _, f in ipairs(failures) do
  io.stdout:write(f .. '\n')
end
io.stdout:write(('%d failed\n'):format(#failures))
os.exit(#failures == 0 and 0 or 1)
