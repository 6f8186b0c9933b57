-- Onbox: loaded by packadd / lazy.nvim. Defines the commands early so that they exist
-- (and explain what to do) even before setup(); setup() enables the server.
if vim.g.loaded_onbox then
  return
end
vim.g.loaded_onbox = true

if vim.fn.has('nvim-0.11') == 0 then
  return
end

require('onbox.commands').define()
