--- Onbox plugin configuration: defaults and merging of the user's `setup()` options.
---
--- Everything here is plugin-side (how Neovim talks to `onbox serve` and shows what it
--- says). Server behaviour is configured through `settings`, which is sent verbatim as the
--- `onbox` section described in docs/protocol.md.
local M = {}

--- @class onbox.Keymaps
--- @field accept string|false accept the whole suggestion
--- @field accept_line string|false accept the next line of the suggestion
--- @field accept_word string|false accept the next word of the suggestion
--- @field dismiss string|false hide the suggestion

--- @class onbox.Config
--- @field cmd string[] command that starts the server
--- @field cmd_env table<string,string>? extra environment for the server process
--- @field filetypes string[]? filetypes to attach to (nil: every file buffer)
--- @field root_markers string[] files or folders that mark a workspace root
--- @field settings table the `onbox` settings section (docs/protocol.md)
--- @field ghost { enabled: boolean, debounce_ms: integer, hl_group: string }
--- @field keymaps onbox.Keymaps
--- @field completion_menu { enabled: boolean, autotrigger: boolean }
--- @field status { arrow: string, separator: string }

--- @type onbox.Config
M.defaults = {
  cmd = { 'onbox', 'serve' },
  cmd_env = nil,
  filetypes = {
    'python', 'javascript', 'javascriptreact', 'typescript', 'typescriptreact', 'go',
    'java', 'rust', 'c', 'cpp', 'lua', 'sh', 'bash', 'zsh', 'ruby', 'php', 'kotlin',
    'scala', 'swift', 'cs', 'sql', 'yaml', 'toml', 'json', 'terraform', 'hcl', 'dockerfile',
    'make', 'markdown', 'text', 'conf', 'dosini', 'proto',
  },
  root_markers = { '.git' },
  settings = {},
  ghost = { enabled = true, debounce_ms = 150, hl_group = 'OnboxGhost' },
  keymaps = {
    accept = '<Tab>',
    accept_line = '<M-l>',
    accept_word = '<M-w>',
    dismiss = '<C-]>',
  },
  completion_menu = { enabled = true, autotrigger = false },
  status = { arrow = '→', separator = ' · ' },
}

--- The configuration in force (defaults until `setup()` merges the user's options).
--- @type onbox.Config
M.current = vim.deepcopy(M.defaults)

--- Settings keys whose values are JSON arrays; every other table is an object.
local LIST_KEYS = { sources = true }

--- The settings table as the server must see it: empty tables become JSON objects
--- (`{}`), not arrays (`[]`, which the server rejects), except for list-valued keys.
--- @param value any
--- @param key string?
--- @return any
function M.json_settings(value, key)
  if type(value) ~= 'table' or (key and LIST_KEYS[key]) or vim.islist(value) and next(value) then
    return value
  end
  if next(value) == nil then
    return vim.empty_dict()
  end
  local out = {}
  for k, v in pairs(value) do
    out[k] = M.json_settings(v, k)
  end
  return out
end

--- Merge user options over the defaults. Lists (cmd, filetypes, root_markers) are replaced,
--- not merged, so `filetypes = { 'python' }` means only Python.
--- @param opts table?
--- @return onbox.Config
function M.apply(opts)
  opts = opts or {}
  vim.validate('opts', opts, 'table')
  local merged = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts)
  for _, key in ipairs({ 'cmd', 'filetypes', 'root_markers' }) do
    if opts[key] ~= nil then
      merged[key] = opts[key]
    end
  end
  if opts.filetypes == false then
    merged.filetypes = nil
  end
  vim.validate('cmd', merged.cmd, 'table')
  vim.validate('settings', merged.settings, 'table')
  vim.validate('ghost.debounce_ms', merged.ghost.debounce_ms, 'number')
  M.current = merged
  return merged
end

return M
