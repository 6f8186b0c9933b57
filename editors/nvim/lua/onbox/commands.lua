--- :OnboxExplain, :OnboxJournal, :OnboxPolicyPull and :OnboxRestart: thin wrappers over
--- the server's requests (docs/protocol.md) that show what the server answers.
local client_mod = require('onbox.client')

local M = {}

local api = vim.api

--- The last floating window opened by a command (for tests and scripts).
--- @type integer?
M.last_float = nil

--- Show lines in a floating window near the cursor; `q` or moving the cursor closes it.
--- @param lines string[]
--- @param title string
--- @return integer bufnr, integer winid
function M.open_float(lines, title)
  -- One Onbox float at a time; open_floating_preview would otherwise focus the old one.
  if M.last_float and api.nvim_win_is_valid(M.last_float) then
    api.nvim_win_close(M.last_float, true)
  end
  local bufnr, winid = vim.lsp.util.open_floating_preview(lines, '', {
    border = 'rounded',
    title = ' ' .. title .. ' ',
    focus_id = 'onbox',
    max_width = math.max(40, math.floor(vim.o.columns * 0.8)),
  })
  vim.b[bufnr].onbox_float = title
  vim.keymap.set('n', 'q', '<cmd>close<cr>', { buffer = bufnr, nowait = true, silent = true })
  M.last_float = winid
  return bufnr, winid
end

local function with_client(bufnr, what)
  local client = client_mod.get(bufnr)
  if not client or client:is_stopped() then
    local msg = 'onbox: no server is running, so %s is unavailable;'
      .. ' open a file in a repository or run :OnboxRestart'
    vim.notify(msg:format(what), vim.log.levels.WARN)
    return nil
  end
  return client
end

local function report_error(what, err)
  local msg = ('onbox: %s failed: %s'):format(what, err.message or vim.inspect(err))
  vim.notify(msg, vim.log.levels.ERROR)
end

--- Render a JSON-like value as indented `key: value` lines.
--- @param value any
--- @param indent string?
--- @param out string[]?
--- @return string[]
function M.render_value(value, indent, out)
  indent = indent or ''
  out = out or {}
  if type(value) ~= 'table' then
    table.insert(out, indent .. tostring(value))
    return out
  end
  local keys = vim.tbl_keys(value)
  table.sort(keys, function(a, b)
    return tostring(a) < tostring(b)
  end)
  for _, key in ipairs(keys) do
    local v = value[key]
    local name = type(key) == 'number' and '-' or (tostring(key) .. ':')
    if type(v) == 'table' and next(v) ~= nil then
      table.insert(out, indent .. name)
      M.render_value(v, indent .. '  ', out)
    elseif type(v) == 'table' then
      table.insert(out, ('%s%s %s'):format(indent, name, vim.islist(v) and '[]' or '{}'))
    else
      table.insert(out, ('%s%s %s'):format(indent, name, v == vim.NIL and 'null' or tostring(v)))
    end
  end
  return out
end

--- The lines :OnboxExplain shows for an `onbox/explain` result.
--- @param result table
--- @return string[]
function M.explain_lines(result)
  if type(result.text) == 'string' and result.text ~= '' then
    return vim.split(result.text, '\n', { plain = true, trimempty = true })
  end
  local lines = { ('%s → %s'):format(result.label or '?', result.destination or '?') }
  for _, reason in ipairs(result.reasons or {}) do
    table.insert(lines, '  ' .. (reason.message or vim.inspect(reason)))
  end
  return lines
end

--- :OnboxExplain — why the current buffer has its label and route.
--- @param bufnr integer?
function M.explain(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local client = with_client(bufnr, 'explain')
  if not client then
    return
  end
  local params = { uri = vim.uri_from_bufnr(bufnr) }
  client:request('onbox/explain', params, function(err, result)
    if err then
      return report_error('explain', err)
    end
    M.open_float(M.explain_lines(result or {}), 'Onbox: why this label')
  end, bufnr)
end

--- The `onbox` CLI prefix from the server command (`{ 'onbox', 'serve' }` → `{ 'onbox' }`),
--- or nil when the command has no `serve` word.
--- @return string[]?
local function cli_prefix()
  local cmd = require('onbox.config').current.cmd
  for i, word in ipairs(cmd) do
    if word == 'serve' and i > 1 then
      return vim.list_slice(cmd, 1, i - 1)
    end
  end
  return nil
end

--- One line per journal entry: sequence, time, kind and what the body says.
--- @param entry table a JSON line of `onbox journal show --json`
--- @return string
function M.entry_line(entry)
  local body = type(entry.body) == 'table' and entry.body or {}
  local parts = {}
  local dest = body.destination
  if type(dest) == 'table' then
    dest = dest.name
  end
  local values = { body.label, dest, body.how, body.outcome }
  for i = 1, 4 do -- not ipairs: it would stop at the first missing field
    local v = values[i]
    if type(v) == 'string' and v ~= '' then
      table.insert(parts, v)
    end
  end
  if type(body.uri) == 'string' then
    table.insert(parts, vim.fs.basename(body.uri))
  end
  local time = type(entry.time) == 'string' and entry.time:sub(1, 19):gsub('T', ' ') or '?'
  return ('%5s  %s  %-14s %s'):format(
    tostring(entry.seq),
    time,
    tostring(entry.kind),
    table.concat(parts, ' · ')
  )
end

--- Recent entries through `onbox journal show --json` (the server's own reader).
--- @param dir string? journal directory the server uses
--- @param limit integer
--- @param done fun(lines: string[])
local function recent_entries(dir, limit, done)
  local prefix = cli_prefix()
  if not prefix or not dir then
    return done({})
  end
  local argv = vim.list_extend(vim.deepcopy(prefix), {
    'journal', 'show', '--json', '--limit', tostring(limit), '--dir', dir,
  })
  local env = require('onbox.config').current.cmd_env
  local ok, err = pcall(vim.system, argv, { text = true, env = env }, function(out)
    local lines = {}
    if out.code ~= 0 then
      lines = { '  (could not read the journal: ' .. vim.trim(out.stderr or '') .. ')' }
    else
      for _, line in ipairs(vim.split(out.stdout or '', '\n', { trimempty = true })) do
        local decoded, entry = pcall(vim.json.decode, line)
        if decoded and type(entry) == 'table' then
          table.insert(lines, M.entry_line(entry))
        end
      end
    end
    vim.schedule(function()
      done(lines)
    end)
  end)
  if not ok then
    done({ '  (could not run ' .. argv[1] .. ': ' .. tostring(err) .. ')' })
  end
end

--- :OnboxJournal — journal statistics and the most recent entries.
--- @param days integer?
function M.journal(days)
  days = days or 7
  local client = with_client(nil, 'the journal')
  if not client then
    return
  end
  client:request('onbox/journalStats', { days = days }, function(err, result)
    if err then
      return report_error('journal stats', err)
    end
    local lines
    if type(result) == 'table' and type(result.text) == 'string' then
      lines = vim.split(result.text, '\n', { plain = true, trimempty = true })
    else
      lines = M.render_value(result or {})
    end
    client:request('onbox/health', {}, function(_, health)
      local dir = vim.tbl_get(health or {}, 'journal', 'dir')
      recent_entries(type(dir) == 'string' and dir or nil, 10, function(recent)
        if #recent > 0 then
          vim.list_extend(lines, { '', 'Recent entries:' })
          vim.list_extend(lines, recent)
        end
        M.open_float(lines, ('Onbox journal (%d days)'):format(days))
      end)
    end)
  end)
end

--- :OnboxPolicyPull — fetch and apply the newest signed policy now.
function M.policy_pull()
  local client = with_client(nil, 'policy pull')
  if not client then
    return
  end
  client:request('onbox/policyPull', {}, function(err, result)
    if err then
      return report_error('policy pull', err)
    end
    result = result or {}
    local level = result.applied and vim.log.levels.INFO or vim.log.levels.WARN
    local msg = result.message or (result.applied and 'policy applied' or 'no newer policy')
    if result.serial ~= nil and result.serial ~= vim.NIL then
      msg = ('%s (serial %s)'):format(msg, tostring(result.serial))
    end
    vim.notify('onbox: ' .. msg, level)
  end)
end

--- Define the user commands (idempotent).
function M.define()
  api.nvim_create_user_command('OnboxExplain', function()
    M.explain()
  end, { desc = 'Onbox: why this buffer has its label and where its completions go' })
  api.nvim_create_user_command('OnboxJournal', function(cmd)
    M.journal(tonumber(cmd.args) or 7)
  end, { nargs = '?', desc = 'Onbox: journal statistics for the last N days (default 7)' })
  api.nvim_create_user_command('OnboxPolicyPull', function()
    M.policy_pull()
  end, { desc = 'Onbox: pull and apply the newest signed policy now' })
  api.nvim_create_user_command('OnboxRestart', function()
    client_mod.restart()
  end, { desc = 'Onbox: restart the language server' })
end

return M
