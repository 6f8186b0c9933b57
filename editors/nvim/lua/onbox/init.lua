--- Onbox for Neovim: sensitivity labels in the statusline, on-box ghost text, and the
--- server's explanations, journal and policy at hand.
---
--- ```lua
--- require('onbox').setup({ settings = { completion = { maxTokens = 64 } } })
--- vim.o.statusline = "%f %{v:lua.require'onbox'.status()}"
--- ```
---
--- Modules: `onbox.config` (options), `onbox.client` (LSP registration), `onbox.state`
--- (`onbox/status` store and statusline), `onbox.ghost` (inline suggestions),
--- `onbox.commands` (user commands and floats), `onbox.health` (:checkhealth onbox).
local M = {}

--- The options in force after `setup()`; nil before.
--- @type onbox.Config?
M.options = nil

--- Configure Onbox and enable the `onbox` language server.
--- @param opts table? see `:help onbox-config`
function M.setup(opts)
  if vim.fn.has('nvim-0.11') == 0 then
    vim.notify('onbox: Neovim 0.11 or newer is required', vim.log.levels.ERROR)
    return
  end
  local config = require('onbox.config')
  M.options = config.apply(opts)
  if vim.fn.executable(M.options.cmd[1]) == 0 then
    -- vim.lsp.enable() would skip the server silently (only its log says why).
    local msg = 'onbox: `%s` is not executable; install Onbox from your company\'s wheel or a'
      .. ' checkout of its repository (python3 -m pip install /path/to/onbox), or set `cmd` in setup()'
    vim.notify(msg:format(M.options.cmd[1]), vim.log.levels.WARN)
  end
  vim.api.nvim_set_hl(0, 'OnboxGhost', { link = 'Comment', default = true })
  require('onbox.commands').define()
  require('onbox.client').register(M.options)
end

--- Statusline component: label and destination of the buffer's document and the
--- server's state, e.g. `restricted → on-box · generating`; empty when not attached.
--- @param bufnr integer? buffer (default: current)
--- @return string
function M.status(bufnr)
  return require('onbox.state').status(bufnr)
end

--- Accept the ghost suggestion (`how`: 'whole' (default), 'line' or 'word').
--- @param how 'whole'|'line'|'word'?
--- @return boolean accepted
function M.accept(how)
  return require('onbox.ghost').accept(how)
end

--- Hide the ghost suggestion.
function M.dismiss()
  require('onbox.ghost').dismiss()
end

--- Whether a ghost suggestion is on screen.
--- @return boolean
function M.visible()
  return require('onbox.ghost').visible()
end

--- Open the explanation float for a buffer (same as :OnboxExplain).
--- @param bufnr integer?
function M.explain(bufnr)
  require('onbox.commands').explain(bufnr)
end

return M
