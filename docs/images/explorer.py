"""Regenerate docs/images/explorer.png: the explorer in headless Chromium, on its own server.

.venv/bin/python docs/images/explorer.py
"""

import socket
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from descentlab.explorer import server

VIEW = (
    "#f=himmelblau&opt=gd,momentum,rmsprop,adam&lr=0.01,0.01,0.01,0.05"
    "&start=-0.4,-0.65;1.5,-2&steps=200"
)

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
srv = uvicorn.Server(uvicorn.Config(server.app(), host="127.0.0.1", port=port, log_level="warning"))
threading.Thread(target=srv.run, daemon=True).start()
while not srv.started:
    time.sleep(0.05)
with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    )
    page = browser.new_page(viewport={"width": 1180, "height": 900}, device_scale_factor=1)
    page.goto(f"http://127.0.0.1:{port}/{VIEW}")
    page.wait_for_selector(".dlx[data-busy='0']", state="attached", timeout=30000)
    slider = page.locator(".dlx-slider")
    slider.evaluate("(s) => { s.value = '14'; s.dispatchEvent(new Event('input')); }")
    page.wait_for_timeout(500)
    out = Path(__file__).with_name("explorer.png")
    page.screenshot(path=str(out), clip={"x": 0, "y": 0, "width": 1180, "height": 720})
    browser.close()
srv.should_exit = True
print(out)
