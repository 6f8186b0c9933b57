--- Registers the `onbox` language server with `vim.lsp.config`/`vim.lsp.enable` and wires
--- what happens when it attaches to a buffer (ghost text, completion menu, keymaps).
local config = require('onbox.config')
local state = require('onbox.state')
local ghost = require('onbox.ghost')

local M = {}

M.name = 'onbox'

local api = vim.api

--- Look up the onbox client for a buffer, or any running onbox client.
--- @param bufnr integer?
--- @return vim.lsp.Client?
function M.get(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local clients = vim.lsp.get_clients({ name = M.name, bufnr = bufnr })
  if #clients == 0 then
    clients = vim.lsp.get_clients({ name = M.name })
  end
  return clients[1]
end

--- What a key did before Onbox mapped it in this buffer: the buffer's or the global
--- insert-mode mapping (e.g. a completion plugin's <Tab>), else the key itself.
--- @param lhs string
--- @return fun()
local function fallback_for(lhs)
  local prev = vim.fn.maparg(lhs, 'i', false, true)
  if vim.tbl_isempty(prev) or (prev.desc or ''):find('^Onbox:') then
    return function()
      api.nvim_feedkeys(vim.keycode(lhs), 'n', false)
    end
  end
  return function()
    local keys
    if prev.callback then
      local result = prev.callback()
      if prev.expr ~= 1 then
        return
      end
      keys = result
    elseif prev.expr == 1 then
      keys = vim.fn.eval(prev.rhs)
    else
      keys = prev.rhs
    end
    if type(keys) == 'string' and keys ~= '' then
      if prev.expr ~= 1 or prev.replace_keycodes == 1 then
        keys = vim.keycode(keys)
      end
      api.nvim_feedkeys(keys, prev.noremap == 1 and 'n' or 'm', false)
    end
  end
end

--- Fallbacks per buffer and key, kept across re-attaches (after a restart maparg()
--- would find our own mapping and lose the one it replaced).
--- @type table<integer, table<string, fun()>>
local fallbacks = {}

local function map(bufnr, lhs, how, desc)
  if not lhs or lhs == '' then
    return
  end
  fallbacks[bufnr] = fallbacks[bufnr] or {}
  local fallback = fallbacks[bufnr][lhs] or fallback_for(lhs)
  fallbacks[bufnr][lhs] = fallback
  vim.keymap.set('i', lhs, function()
    local done
    if how == 'dismiss' then
      done = ghost.visible()
      ghost.dismiss()
    else
      done = ghost.accept(how)
    end
    if not done then
      -- No suggestion on screen: the key does what it did without Onbox.
      fallback()
    end
  end, { buffer = bufnr, desc = desc, silent = true })
end

--- LspAttach for the onbox client: ghost text, keymaps and the completion menu.
--- @param client vim.lsp.Client
--- @param bufnr integer
function M.on_attach(client, bufnr)
  local opts = config.current
  if opts.ghost.enabled then
    ghost.attach(bufnr)
    local keys = opts.keymaps
    map(bufnr, keys.accept, 'whole', 'Onbox: accept suggestion')
    map(bufnr, keys.accept_line, 'line', 'Onbox: accept a line of the suggestion')
    map(bufnr, keys.accept_word, 'word', 'Onbox: accept a word of the suggestion')
    map(bufnr, keys.dismiss, 'dismiss', 'Onbox: dismiss suggestion')
  end
  if opts.completion_menu.enabled and vim.lsp.completion then
    vim.lsp.completion.enable(true, client.id, bufnr, {
      autotrigger = opts.completion_menu.autotrigger,
    })
  end
end

--- The `vim.lsp.Config` for onbox built from the plugin options.
--- @param opts onbox.Config
--- @return vim.lsp.Config
function M.lsp_config(opts)
  return {
    cmd = opts.cmd,
    cmd_env = opts.cmd_env,
    filetypes = opts.filetypes,
    root_markers = opts.root_markers,
    -- One server for every repository: it labels each file from its own path, and a
    -- second process would load a second copy of the model.
    reuse_client = function(client, cfg)
      return client.name == cfg.name and not client:is_stopped()
    end,
    -- The same section goes both ways: initializationOptions at start, and
    -- workspace/configuration answers (`section = "onbox"`) later.
    init_options = config.json_settings(opts.settings),
    settings = { onbox = config.json_settings(opts.settings) },
    capabilities = {
      textDocument = {
        inlineCompletion = { dynamicRegistration = false },
      },
      window = { workDoneProgress = true },
    },
    handlers = {
      ['onbox/status'] = state.on_status,
    },
    on_init = function()
      state.on_init()
    end,
    on_exit = function(code, signal, client_id)
      state.on_exit(code, signal, client_id)
      vim.schedule(function()
        ghost.menu_requests = {}
        ghost.dismiss()
      end)
    end,
    on_attach = function(client, bufnr)
      M.on_attach(client, bufnr)
    end,
  }
end

--- Register and enable the server.
--- @param opts onbox.Config
function M.register(opts)
  -- Assign rather than call vim.lsp.config(): a second setup() must replace lists such
  -- as filetypes, not merge them index by index. `vim.lsp.config('onbox', {...})` after
  -- setup() and `lsp/onbox.lua` files still apply on top/below as usual.
  vim.lsp.config[M.name] = M.lsp_config(opts)
  vim.lsp.enable(M.name)
  local group = api.nvim_create_augroup('onbox.client', { clear = true })
  api.nvim_create_autocmd('LspDetach', {
    group = group,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == M.name then
        ghost.detach(args.buf)
      end
    end,
  })
end

--- Stop every onbox client and start them again for the open buffers.
function M.restart()
  vim.lsp.enable(M.name, false)
  local ok = vim.wait(5000, function()
    return #vim.lsp.get_clients({ name = M.name }) == 0
  end, 50)
  if not ok then
    for _, client in ipairs(vim.lsp.get_clients({ name = M.name })) do
      client:stop(true)
    end
  end
  -- Forget what the old server said; the statusline fills in again as the new one reports.
  state.server = {}
  state.docs = {}
  vim.lsp.enable(M.name)
end

return M
