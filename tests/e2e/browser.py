"""Headless Chromium (Debian's, driven by Playwright: browsers cannot be downloaded here) and an
SSE reader, for the room-screen test and benchmark."""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator

import aiohttp
import pytest

from appliance.http import sse

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator:
    """A fresh browser with its own profile directory, closed on exit."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: `make deps` installs Debian's chromium")
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="room-screen-profile-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, args=FLAGS, headless=True,
                viewport={"width": 1280, "height": 720})
            try:
                yield context
            finally:
                await context.close()


async def follow_sse(url: str, into: list[dict], **params: str) -> None:
    """Every message of the SSE stream at `url` into `into`, until the server ends the stream."""
    async with aiohttp.ClientSession() as http:
        async with http.get(url, params=params, timeout=aiohttp.ClientTimeout(total=None)) as response:
            assert response.status == 200, await response.text()
            block = ""
            try:
                async for line in response.content:
                    block += line.decode()
                    if block.endswith("\n\n"):
                        into += sse.parse_stream(block)
                        block = ""
            except aiohttp.ClientPayloadError:
                pass  # the daemon stopped mid-message: what came whole counts


def finals(messages: list[dict]) -> list[tuple[int, str, str]]:
    return [(m["data"]["seq"], m["data"]["cue_id"], m["data"]["text"]) for m in messages
            if "event" not in m and m["data"]["kind"] == "final"]
