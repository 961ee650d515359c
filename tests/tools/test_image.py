"""see_image: type sniffing, size limit, and the transient payload for the next model call."""

from __future__ import annotations

import base64

import pytest

from shoal.sandbox import ScriptedSandbox
from shoal.tools.builtin.image import IMAGE_PAYLOAD_KEY, image_mime_type
from tests.tools.conftest import SandboxHarness

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (PNG, "image/png"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 16, "image/jpeg"),
        (b"GIF89a" + b"\0" * 16, "image/gif"),
        (b"RIFF\x10\0\0\0WEBPVP8 ", "image/webp"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", None),
        (b"RIFF\x10\0\0\0WAVEfmt ", None),
        (b"", None),
    ],
)
def test_image_types_by_magic_bytes(data: bytes, mime: str | None) -> None:
    assert image_mime_type(data) == mime


async def test_see_image_returns_metadata_and_a_payload(
    box: SandboxHarness, fake: ScriptedSandbox
) -> None:
    await fake.write_file("box1", "shots/home.png", PNG)
    result = await box.call("see_image", file_path="shots/home.png")
    assert result.success and "/workspace/shots/home.png" in result.output
    assert result.metadata["image"] == {
        "mime_type": "image/png",
        "path": "/workspace/shots/home.png",
        "size": len(PNG),
    }
    payload = result.metadata[IMAGE_PAYLOAD_KEY]
    assert payload["mime_type"] == "image/png"
    assert base64.b64decode(payload["data"]) == PNG
    assert payload["data"] not in result.output


async def test_see_image_refuses_other_files_and_large_images(fake: ScriptedSandbox) -> None:
    await fake.create(sandbox_id="box1")
    box = SandboxHarness(fake, "box1", see_image_max_bytes=4096)
    await fake.write_file("box1", "notes.txt", b"hello")
    await fake.write_file("box1", "huge.png", PNG + b"\0" * 5000)

    text = await box.call("see_image", file_path="notes.txt")
    assert not text.success and "not a PNG, JPEG, GIF or WebP image" in text.output
    huge = await box.call("see_image", file_path="huge.png")
    assert not huge.success and "up to 4096 bytes" in huge.output
    missing = await box.call("see_image", file_path="nope.png")
    assert not missing.success and "No such file: /workspace/nope.png" in missing.output
    for result in (text, huge, missing):
        assert IMAGE_PAYLOAD_KEY not in result.metadata
