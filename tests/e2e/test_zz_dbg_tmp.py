from tests.e2e.test_nvim import *  # noqa
from tests.e2e.test_nvim import editor  # noqa

def test_dbg(editor):
    editor.open(RESTRICTED_FILE)
    editor.wait_for("label", lambda: "→" in editor.status())
    editor.input("Godef negate(n: int) -> int:<CR>return ")
    editor.wait_for("typed", lambda: editor.lua("return vim.api.nvim_get_current_line()").endswith("return "))
    r = editor.lua("local p = vim.lsp.util.make_position_params(0, 'utf-16'); return vim.lsp.buf_request_sync(0, 'textDocument/completion', p, 30000)")
    print("SYNC", r)
    editor.input("<C-x><C-o>")
    import time; t=time.monotonic()
    while time.monotonic()-t < 15:
        time.sleep(0.5)
    print("INFO", editor.lua("return vim.fn.complete_info()"), editor.lua("return vim.bo.omnifunc"), editor.diagnostics())
