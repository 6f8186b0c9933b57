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
