--- Ghost text: asks `textDocument/inlineCompletion` on a debounce while typing in insert
--- mode and draws the first suggestion with extmarks (inline virtual text for the first
--- line, virtual lines for the rest). Accepting inserts the text and runs the item's
--- `onbox.accept` command so the server journals the acceptance.
local config = require('onbox.config')

local M = {}

local api = vim.api
M.ns = api.nvim_create_namespace('onbox.ghost')

--- The suggestion on screen, if any.
--- @class onbox.Ghost
--- @field bufnr integer
--- @field row integer 0-based row of the anchor
--- @field col integer 0-based byte column of the anchor (where the text goes)
--- @field text string the part of the suggestion not yet in the buffer
--- @field replace_end integer? byte column up to which `accept('whole')` replaces text
--- @field item table the inline completion item
--- @field client_id integer
--- @field tick integer b:changedtick when it was drawn or last updated by us
--- @field line_head string the line's text before `col` when drawn
--- @field reported boolean whether the acceptance was already sent to the server
--- @type onbox.Ghost?
M.current = nil

--- Last `onbox.accept` round trip: `{ command, how, err, result }` (for scripts and tests).
--- @type table?
M.last_accept = nil

--- `completionId` of the last suggestion reported as accepted.
--- @type string?
M.last_item_id = nil

--- b:changedtick right after a whole accept: the TextChangedI/CursorMovedI that our own
--- insertion causes must not trigger a new request.
--- @type integer?
M._skip_tick = nil

--- Number of inline completion requests sent (for diagnostics).
M.requests = 0

local timer = nil --- @type uv.uv_timer_t?
local pending = nil --- @type { client: vim.lsp.Client, id: integer }?

local function cancel_pending()
  if pending then
    pcall(function()
      pending.client:cancel_request(pending.id)
    end)
    pending = nil
  end
end

local function stop_timer()
  if timer then
    timer:stop()
  end
end

--- Remove the suggestion from the screen and forget it.
function M.clear()
  local g = M.current
  M.current = nil
  if g and api.nvim_buf_is_valid(g.bufnr) then
    api.nvim_buf_clear_namespace(g.bufnr, M.ns, 0, -1)
  end
end

--- Hide the suggestion and stop any request in flight.
function M.dismiss()
  stop_timer()
  cancel_pending()
  M.clear()
end

--- @return boolean whether a suggestion is on screen
function M.visible()
  return M.current ~= nil and M.current.text ~= ''
end

local function render(g)
  api.nvim_buf_clear_namespace(g.bufnr, M.ns, 0, -1)
  if g.text == '' then
    return
  end
  local hl = config.current.ghost.hl_group
  local shown = g.text:gsub('\t', string.rep(' ', vim.bo[g.bufnr].tabstop))
  local lines = vim.split(shown, '\n', { plain = true })
  local opts = { hl_mode = 'combine', right_gravity = false }
  if lines[1] ~= '' then
    opts.virt_text = { { lines[1], hl } }
    opts.virt_text_pos = 'inline'
  end
  if #lines > 1 then
    opts.virt_lines = {}
    for i = 2, #lines do
      table.insert(opts.virt_lines, { { lines[i], hl } })
    end
  end
  api.nvim_buf_set_extmark(g.bufnr, M.ns, g.row, g.col, opts)
end

--- The visible text of an inline completion item at the cursor, or nil when the item
--- does not fit what is already typed.
--- @return string? text, integer? replace_end
local function suffix_of(item, bufnr, row, col, encoding)
  local text = item.insertText
  if type(text) == 'table' then
    text = text.value
  end
  if type(text) ~= 'string' or text == '' then
    return nil
  end
  local range = item.range
  if range == nil or range == vim.NIL then
    return text, nil
  end
  if range.start.line ~= row or range['end'].line ~= row then
    return nil
  end
  local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  local ok_s, start_col = pcall(vim.str_byteindex, line, encoding, range.start.character, false)
  local ok_e, end_col = pcall(vim.str_byteindex, line, encoding, range['end'].character, false)
  if not ok_s or not ok_e or start_col > col then
    return nil
  end
  local typed = line:sub(start_col + 1, col)
  if not vim.startswith(text, typed) then
    return nil
  end
  return text:sub(#typed + 1), math.max(end_col, col)
end

local function onbox_client(bufnr)
  return vim.lsp.get_clients({ name = 'onbox', bufnr = bufnr })[1]
end

--- `textDocument/completion` requests in flight (the menu's), by request id. The
--- menu's omnifunc answers asynchronously, so Neovim is back in plain insert mode while
--- it waits; an inline request then would supersede it on the server.
--- @type table<integer, true>
M.menu_requests = {}

--- LspRequest autocommand: track the completion menu's requests.
--- @param args table
function M.on_lsp_request(args)
  local data = args.data or {}
  local request = data.request or {}
  if request.method ~= 'textDocument/completion' then
    return
  end
  local client = vim.lsp.get_client_by_id(data.client_id)
  if not client or client.name ~= 'onbox' then
    return
  end
  if request.type == 'pending' then
    M.menu_requests[data.request_id] = true
  else
    M.menu_requests[data.request_id] = nil
  end
end

--- Whether ghost text must stay out of the way: not in plain insert mode, or insert-mode
--- completion (the menu, <C-x><C-o>) is active or waiting for its answer.
--- @return boolean
function M.menu_active()
  return next(M.menu_requests) ~= nil
    or api.nvim_get_mode().mode ~= 'i'
    or vim.fn.pumvisible() == 1
    or vim.fn.complete_info({ 'mode' }).mode ~= ''
end

--- Ask the server for a suggestion at the cursor now (the debounce calls this).
function M.request()
  cancel_pending()
  local bufnr = api.nvim_get_current_buf()
  local client = onbox_client(bufnr)
  if not client or client:is_stopped() then
    return
  end
  -- Not while the completion menu is in use: the server serves one request per
  -- document at a time, so ghost text would supersede the menu's request.
  if M.menu_active() then
    return
  end
  local win = api.nvim_get_current_win()
  local cursor = api.nvim_win_get_cursor(win)
  local tick = api.nvim_buf_get_changedtick(bufnr)
  local params = vim.lsp.util.make_position_params(win, client.offset_encoding)
  params.context = { triggerKind = 2 } -- Automatic
  local ok, id
  ok, id = client:request('textDocument/inlineCompletion', params, function(err, result)
    if pending and pending.id == id then
      pending = nil
    end
    if err or not result then
      return
    end
    if
      not api.nvim_buf_is_valid(bufnr)
      or api.nvim_get_current_buf() ~= bufnr
      or api.nvim_buf_get_changedtick(bufnr) ~= tick
      or M.menu_active()
    then
      return
    end
    local now = api.nvim_win_get_cursor(0)
    if now[1] ~= cursor[1] or now[2] ~= cursor[2] then
      return
    end
    local items = result.items or result
    for _, item in ipairs(items) do
      local text, replace_end =
        suffix_of(item, bufnr, cursor[1] - 1, cursor[2], client.offset_encoding)
      if text and text ~= '' then
        local line = api.nvim_buf_get_lines(bufnr, cursor[1] - 1, cursor[1], false)[1] or ''
        M.current = {
          bufnr = bufnr,
          row = cursor[1] - 1,
          col = cursor[2],
          text = text,
          replace_end = replace_end,
          item = item,
          client_id = client.id,
          tick = tick,
          line_head = line:sub(1, cursor[2]),
          reported = false,
        }
        render(M.current)
        return
      end
    end
  end, bufnr)
  if ok and id then
    pending = { client = client, id = id }
    M.requests = M.requests + 1
  end
end

--- Restart the debounce: a request goes out once typing pauses.
function M.schedule()
  if not config.current.ghost.enabled then
    return
  end
  timer = timer or vim.uv.new_timer()
  timer:stop()
  timer:start(
    config.current.ghost.debounce_ms,
    0,
    vim.schedule_wrap(function()
      M.request()
    end)
  )
end

--- TextChangedI/CursorMovedI: keep the suggestion if the user typed what it suggests,
--- otherwise drop it and ask again after the debounce.
--- @param bufnr integer
function M.on_edit(bufnr)
  local g = M.current
  local tick = api.nvim_buf_get_changedtick(bufnr)
  if g and g.bufnr == bufnr and g.tick == tick then
    return -- our own insertion, or only the cursor moved onto the anchor
  end
  if g and g.bufnr == bufnr then
    local cursor = api.nvim_win_get_cursor(0)
    local line = api.nvim_buf_get_lines(bufnr, cursor[1] - 1, cursor[1], false)[1] or ''
    if cursor[1] - 1 == g.row and cursor[2] >= g.col and line:sub(1, g.col) == g.line_head then
      local typed = line:sub(g.col + 1, cursor[2])
      if typed ~= '' and vim.startswith(g.text, typed) and #typed < #g.text then
        g.text = g.text:sub(#typed + 1)
        g.col = cursor[2]
        g.line_head = line:sub(1, cursor[2])
        g.tick = tick
        render(g)
        return
      end
    end
  end
  cancel_pending()
  M.clear()
  M.schedule()
end

--- The part of `text` that `how` takes.
--- @param text string
--- @param how 'whole'|'line'|'word'
--- @return string
function M.take(text, how)
  if how == 'whole' then
    return text
  end
  if how == 'line' then
    if text:sub(1, 1) == '\n' then
      local rest = text:sub(2)
      return '\n' .. (rest:match('^[^\n]*') or '')
    end
    return text:match('^[^\n]*') or text
  end
  local word = text:match('^%s*[%w_]+') or text:match('^%s*[^%w_%s]+') or text:match('^%s+')
  return word or text
end

local function report(g, how)
  local command = g.item.command
  if type(command) ~= 'table' or not command.command then
    return
  end
  local client = vim.lsp.get_client_by_id(g.client_id)
  if not client then
    return
  end
  local arguments = vim.deepcopy(command.arguments or {})
  if type(arguments[1]) == 'table' then
    arguments[1].how = how
    M.last_item_id = arguments[1].completionId
  end
  client:request(
    'workspace/executeCommand',
    { command = command.command, arguments = arguments },
    function(err, result)
      M.last_accept = { how = how, err = err, result = result, command = command.command }
      if err then
        vim.notify(
          ('onbox: the server did not record the acceptance: %s'):format(err.message or err),
          vim.log.levels.WARN
        )
      end
    end,
    g.bufnr
  )
end

--- Accept the suggestion, a line of it or a word of it.
--- @param how 'whole'|'line'|'word'?
--- @return boolean accepted whether there was a suggestion to accept
function M.accept(how)
  how = how or 'whole'
  local g = M.current
  if not g or g.text == '' or not api.nvim_buf_is_valid(g.bufnr) then
    return false
  end
  local piece = M.take(g.text, how)
  local lines = vim.split(piece, '\n', { plain = true })
  local end_col = g.col
  if how == 'whole' and g.replace_end then
    local line = api.nvim_buf_get_lines(g.bufnr, g.row, g.row + 1, false)[1] or ''
    end_col = math.min(g.replace_end, #line)
  end
  api.nvim_buf_set_text(g.bufnr, g.row, g.col, g.row, end_col, lines)
  local row = g.row + #lines - 1
  local col = #lines == 1 and (g.col + #lines[1]) or #lines[#lines]
  api.nvim_win_set_cursor(0, { row + 1, col })
  if not g.reported then
    g.reported = true
    report(g, how)
  end
  g.text = g.text:sub(#piece + 1)
  if g.text == '' then
    M.clear()
  else
    g.row, g.col = row, col
    local line = api.nvim_buf_get_lines(g.bufnr, row, row + 1, false)[1] or ''
    g.line_head = line:sub(1, col)
    g.replace_end = nil
    g.tick = api.nvim_buf_get_changedtick(g.bufnr)
    render(g)
  end
  -- Our own edit: the TextChangedI it causes must not drop or re-request.
  if M.current then
    M.current.tick = api.nvim_buf_get_changedtick(g.bufnr)
  else
    stop_timer()
    M._skip_tick = api.nvim_buf_get_changedtick(g.bufnr)
  end
  return true
end

--- Attach the insert-mode autocommands to a buffer.
--- @param bufnr integer
function M.attach(bufnr)
  local group = api.nvim_create_augroup('onbox.ghost.' .. bufnr, { clear = true })
  api.nvim_create_autocmd({ 'TextChangedI', 'TextChangedP' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      if M._skip_tick == api.nvim_buf_get_changedtick(bufnr) then
        return
      end
      M.on_edit(bufnr)
    end,
  })
  api.nvim_create_autocmd('CursorMovedI', {
    group = group,
    buffer = bufnr,
    callback = function()
      local g = M.current
      if g and g.bufnr == bufnr then
        local c = api.nvim_win_get_cursor(0)
        if c[1] - 1 == g.row and c[2] == g.col then
          return
        end
      end
      if M._skip_tick == api.nvim_buf_get_changedtick(bufnr) and not g then
        return
      end
      M.on_edit(bufnr)
    end,
  })
  api.nvim_create_autocmd('LspRequest', {
    group = group,
    buffer = bufnr,
    callback = M.on_lsp_request,
  })
  api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      M.dismiss()
    end,
  })
end

--- Remove the autocommands from a buffer (when the client detaches).
--- @param bufnr integer
function M.detach(bufnr)
  pcall(api.nvim_del_augroup_by_name, 'onbox.ghost.' .. bufnr)
  if M.current and M.current.bufnr == bufnr then
    M.dismiss()
  end
end

return M
