-- Init file for the Neovim e2e tests: loads the plugin the way a user does with plain
-- `packadd` and calls setup() with options the test passes as JSON in ONBOX_TEST_SETUP.
local pack = assert(os.getenv('ONBOX_TEST_PACKPATH'), 'ONBOX_TEST_PACKPATH is not set')
vim.opt.packpath:prepend(pack)
vim.cmd.packadd('onbox')

local opts = vim.json.decode(os.getenv('ONBOX_TEST_SETUP') or '{}', { luanil = { object = true } })
require('onbox').setup(opts)

vim.o.laststatus = 2
vim.o.statusline = "%f %{v:lua.require'onbox'.status()}"
vim.o.swapfile = false
vim.o.hidden = true
vim.o.shada = ''

-- Every distinct statusline text the current buffer showed, in order (the tests read it).
_G.onbox_status_history = {}
vim.api.nvim_create_autocmd('User', {
  pattern = 'OnboxStatus',
  callback = function()
    local text = require('onbox').status()
    local history = _G.onbox_status_history
    if history[#history] ~= text then
      table.insert(history, text)
    end
  end,
})
