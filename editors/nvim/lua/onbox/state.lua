--- What the server last said, per document and server-wide, fed by `onbox/status`
--- notifications and by the client's exit; rendered by `status()` for statuslines.
local config = require('onbox.config')

local M = {}

--- Last `onbox/status` params per document URI.
--- @type table<string, table>
M.docs = {}

--- Server-wide state: from `onbox/status` with `uri: null`, or set when the server exits.
--- @type { state: string?, message: string?, policy: table?, journal: table?, model: string? }
M.server = {}

local STATE_TEXT = {
  loading = 'loading model',
  generating = 'generating',
  disabled = 'disabled',
  stopped = 'stopped',
}

local function notify_changed()
  vim.schedule(function()
    pcall(vim.api.nvim_exec_autocmds, 'User', { pattern = 'OnboxStatus', modeline = false })
    pcall(vim.cmd.redrawstatus, { bang = true })
  end)
end

--- Handler for the `onbox/status` notification (server → client).
--- @param params table
function M.on_status(_, params, _)
  if type(params) ~= 'table' then
    return
  end
  local uri = params.uri
  if uri == nil or uri == vim.NIL then
    for _, key in ipairs({ 'state', 'message', 'policy', 'journal', 'model' }) do
      if params[key] ~= nil and params[key] ~= vim.NIL then
        M.server[key] = params[key]
      end
    end
  else
    M.docs[uri] = params
    -- A document-level report from a live server means the server is up again.
    if M.server.state == 'error' and M.server.exited then
      M.server = {}
    end
  end
  notify_changed()
end

--- Called when the server process ends; a crash is shown as an error in every statusline.
--- @param code integer
--- @param signal integer
function M.on_exit(code, signal, _)
  if code == 0 and signal == 0 then
    M.server = { state = 'stopped', message = 'server stopped', exited = true }
  else
    local why = signal ~= 0 and ('signal %d'):format(signal) or ('code %d'):format(code)
    M.server = { state = 'error', message = ('server exited (%s)'):format(why), exited = true }
    vim.schedule(function()
      vim.notify(
        ('onbox: the server exited (%s); run :OnboxRestart to start it again'):format(why),
        vim.log.levels.ERROR
      )
    end)
  end
  notify_changed()
end

--- Called when the server (re)starts so a stale exit error goes away.
function M.on_init()
  if M.server.exited then
    M.server = {}
  end
  notify_changed()
end

--- The effective state of a buffer's document: a server-wide failure wins, then the
--- document's own state, then server-wide loading/disabled.
--- @param doc table?
--- @return string state, string message
function M.effective_state(doc)
  local server = M.server
  if server.state == 'error' or server.state == 'stopped' then
    return server.state, server.message or ''
  end
  if doc and doc.state and doc.state ~= 'ready' then
    return doc.state, doc.message or ''
  end
  if server.state == 'loading' or server.state == 'disabled' then
    return server.state, server.message or ''
  end
  return 'ready', ''
end

--- @param bufnr integer?
--- @return table? doc the last `onbox/status` for the buffer's document
function M.doc_for(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  if not vim.api.nvim_buf_is_valid(bufnr) then
    return nil
  end
  return M.docs[vim.uri_from_bufnr(bufnr)]
end

local function attached(bufnr)
  return #vim.lsp.get_clients({ name = 'onbox', bufnr = bufnr }) > 0
end

--- The statusline text for a buffer, e.g. `restricted → on-box` or
--- `restricted → on-box · generating`; empty when Onbox knows nothing about the buffer.
--- @param bufnr integer? buffer (default: current)
--- @return string
function M.status(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local doc = M.doc_for(bufnr)
  local state, message = M.effective_state(doc)
  local opts = config.current.status
  local text
  if doc and doc.label and doc.label ~= vim.NIL then
    text = doc.label
    if doc.destination and doc.destination ~= vim.NIL then
      text = ('%s %s %s'):format(doc.label, opts.arrow, doc.destination)
    end
  elseif attached(bufnr) then
    text = 'onbox'
  elseif M.server.exited then
    text = 'onbox'
  else
    return ''
  end
  -- An expired policy makes every file fail closed; say so rather than look normal.
  local policy = (doc and type(doc.policy) == 'table' and doc.policy) or M.server.policy
  if type(policy) == 'table' and policy.expired == true then
    text = text .. opts.separator .. 'policy expired'
  end
  if state == 'error' then
    local msg = message ~= '' and (': ' .. message) or ''
    return text .. opts.separator .. 'error' .. msg
  end
  if state ~= 'ready' then
    return text .. opts.separator .. (STATE_TEXT[state] or state)
  end
  return text
end

return M
