--- :checkhealth onbox — the plugin's setup, the server executable and what the running
--- server reports through `onbox/health` (model, GPU offload, policy, journal).
local M = {}

local health = vim.health

local function present(v)
  return v ~= nil and v ~= vim.NIL and v ~= ''
end

local function check_server_binary(cmd)
  local exe = vim.fn.exepath(cmd[1])
  if exe == '' then
    health.error(
      ('server command `%s` not found on PATH'):format(cmd[1]),
      {
        'python3 -m pip install /path/to/onbox (your company\'s wheel or a checkout of the'
          .. ' Onbox repository; never the name `onbox` from a public index)',
        'or set `cmd` in setup() to the full path of onbox',
      }
    )
    return
  end
  local out = vim.system({ exe, '--version' }, { text = true }):wait(15000)
  local version = vim.trim((out.stdout or '') .. (out.stderr or ''))
  if out.code == 0 and version ~= '' then
    health.ok(('server found: %s (%s)'):format(exe, version))
  else
    local msg = 'server found at %s but `--version` failed (exit %s)'
    health.warn(msg:format(exe, tostring(out.code)))
  end
end

local function report_model(h)
  local model = h.model or {}
  if present(model.error) then
    health.error(('model: %s'):format(model.error), {
      'check settings.model.path, or remove it to use the embedded default model',
    })
  elseif model.loaded then
    local sha = present(model.sha256) and (' sha256 ' .. model.sha256:sub(1, 12)) or ''
    health.ok(('model loaded: %s%s'):format(tostring(model.path), sha))
  else
    health.warn(('model not loaded yet: %s'):format(tostring(model.path)), {
      'the model loads on first use; run :checkhealth onbox again in a few seconds',
    })
  end
  if h.gpuOffload then
    health.ok('GPU offload: on')
  else
    health.info('GPU offload: off (CPU only; llama.cpp without GPU support or no GPU found)')
  end
  local llama = h.llamaCpp
  if type(llama) == 'table' and present(llama.version) then
    health.info(('llama.cpp: %s'):format(llama.version))
  end
end

local function report_policy(h)
  local policy = h.policy or {}
  local name = ('%s (serial %s)'):format(tostring(policy.id), tostring(policy.serial))
  if policy.expired then
    local msg = 'policy %s expired at %s; every file is treated as restricted'
    health.error(msg:format(name, tostring(policy.expires)), {
      'run :OnboxPolicyPull, or ask your admin to publish a fresh policy',
    })
  elseif present(policy.expires) then
    health.ok(('policy in force: %s, expires %s'):format(name, policy.expires))
  else
    health.ok(('policy in force: %s, no expiry'):format(name))
  end
  if present(policy.source) then
    health.info(('policy source: %s'):format(policy.source))
  end
  if present(policy.lastError) then
    health.warn(('last policy update failed: %s'):format(policy.lastError))
  end
  local trust = h.trustRoot
  if type(trust) == 'table' and not trust.present then
    local msg = 'no admin trust root at %s: an unmanaged workstation'
      .. ' (settings policy.path or the built-in policy applies)'
    health.info(msg:format(tostring(trust.path)))
  end
end

local function report_journal(h)
  local journal = h.journal or {}
  if journal.writable then
    health.ok(('journal writable: %s'):format(tostring(journal.dir)))
  else
    local why = present(journal.error) and journal.error or 'the server has no journal open'
    health.error(('journal not writable: %s (%s)'):format(tostring(journal.dir), why), {
      'make the directory writable or set ONBOX_JOURNAL_DIR;'
        .. ' until then nothing leaves this machine',
    })
  end
end

--- Entry point for :checkhealth onbox.
function M.check()
  health.start('onbox: plugin')
  if vim.fn.has('nvim-0.11') == 1 then
    health.ok('Neovim ' .. tostring(vim.version()))
  else
    health.error('Neovim 0.11 or newer is required')
  end
  local onbox = require('onbox')
  if not onbox.options then
    health.warn('require("onbox").setup() has not been called', {
      'add it to your config (see :help onbox-setup)',
    })
  else
    health.ok('setup() called; server enabled: ' .. tostring(vim.lsp.is_enabled('onbox')))
  end
  local cmd = (onbox.options or require('onbox.config').defaults).cmd

  health.start('onbox: server')
  check_server_binary(cmd)
  local client = require('onbox.client').get(vim.fn.bufnr('#'))
  if not client or client:is_stopped() then
    local st = require('onbox.state').server
    if st.exited then
      health.error(st.message or 'the server exited', { 'run :OnboxRestart' })
    else
      health.warn('no onbox server is running', { 'open a file in a git repository to start it' })
    end
    return
  end
  local resp, err = client:request_sync('onbox/health', {}, 20000)
  if not resp or resp.err then
    local why = err or (resp and resp.err and resp.err.message) or '?'
    health.error(('onbox/health failed: %s'):format(why), {
      'the server may be busy loading the model; run :checkhealth onbox again',
    })
    return
  end
  local h = resp.result or {}
  health.ok(('server running: onbox %s (client id %d)'):format(tostring(h.version), client.id))
  report_model(h)

  health.start('onbox: policy')
  report_policy(h)

  health.start('onbox: journal')
  report_journal(h)
end

return M
