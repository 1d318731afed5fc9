"""The conformance suite's "everything server", written with nbmcp's public API only and run in a kernel.

The official suite (npm ``@modelcontextprotocol/conformance``) calls tools, resources and prompts of fixed names
(``test_simple_text``, ``test://static-text``, ``test_simple_prompt``...), as its TypeScript reference server
defines them; this is the same server as a notebook user would write it. Run it as a cell (``%load_ext nbmcp``
first) or in a plain Python process (then ``nbmcp.start()``).
"""

import asyncio
import base64
import json
from typing import Any

from mcp.types import AudioContent, EmbeddedResource, ImageContent, TextContent, TextResourceContents

import nbmcp

PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV_TINY = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="


def _image() -> ImageContent:
    return ImageContent(type="image", data=PNG_1PX, mime_type="image/png")


def _embedded(uri: str, text: str, mime_type: str = "text/plain") -> EmbeddedResource:
    return EmbeddedResource(type="resource", resource=TextResourceContents(uri=uri, mime_type=mime_type, text=text))


# -- tools ------------------------------------------------------------------------------------------------


@nbmcp.tool(read_only=True)
def test_simple_text() -> str:
    """Tests simple text content response"""
    return "This is a simple text response for testing."


@nbmcp.tool(read_only=True)
def test_image_content() -> ImageContent:
    """Tests image content response"""
    return _image()


@nbmcp.tool(read_only=True)
def test_audio_content() -> AudioContent:
    """Tests audio content response"""
    return AudioContent(type="audio", data=WAV_TINY, mime_type="audio/wav")


@nbmcp.tool(read_only=True)
def test_embedded_resource() -> EmbeddedResource:
    """Tests embedded resource content response"""
    return _embedded("test://embedded-resource", "This is an embedded resource content.")


@nbmcp.tool(read_only=True)
def test_multiple_content_types() -> list:
    """Tests response with multiple content types (text, image, resource)"""
    data = json.dumps({"test": "data", "value": 123})
    return [
        TextContent(type="text", text="Multiple content types test:"),
        _image(),
        _embedded("test://mixed-content-resource", data, "application/json"),
    ]


@nbmcp.tool(read_only=True)
async def test_tool_with_logging(ctx: nbmcp.Context) -> str:
    """Tests tool that emits log messages during execution"""
    for message in ("Tool execution started", "Tool processing data", "Tool execution completed"):
        await ctx.info(message)
        await asyncio.sleep(0.05)
    return "Tool with logging executed successfully"


@nbmcp.tool(read_only=True)
async def test_tool_with_progress(ctx: nbmcp.Context) -> str:
    """Tests tool that reports progress notifications"""
    for step in (0, 50, 100):
        await ctx.report_progress(step, 100, f"Completed step {step} of 100")
        await asyncio.sleep(0.05)
    meta = ctx.request_context.meta
    return str(getattr(meta, "progress_token", None) if meta is not None else None)


@nbmcp.tool(read_only=True)
def test_error_handling() -> str:
    """Tests error response handling"""
    raise RuntimeError("This tool intentionally returns an error for testing")


@nbmcp.tool(read_only=True)
async def test_reconnection(ctx: nbmcp.Context) -> str:
    """Tests SSE stream disconnection and client reconnection (SEP-1699)."""
    await asyncio.sleep(0.1)
    return (
        "Reconnection test completed successfully. If you received this, the client properly reconnected after "
        "stream closure."
    )


@nbmcp.tool(read_only=True)
async def test_sampling(prompt: str, ctx: nbmcp.ToolContext) -> str:
    """Tests server-initiated sampling (LLM completion request)

    Args:
        prompt: The prompt to send to the LLM
    """
    answer = await ctx.sample(prompt, max_tokens=100)
    return f"LLM response: {getattr(answer.content, 'text', 'No response')}"


@nbmcp.tool(read_only=True)
async def test_elicitation(message: str, ctx: nbmcp.ToolContext) -> str:
    """Tests server-initiated elicitation (user input request)

    Args:
        message: The message to show the user
    """
    schema = {
        "type": "object",
        "properties": {"response": {"type": "string", "description": "User's response"}},
        "required": ["response"],
    }
    answer = await ctx.elicit(message, schema)
    return f"User response: action={answer.action}, content={json.dumps(getattr(answer, 'data', {}) or {})}"


@nbmcp.tool(read_only=True)
async def test_elicitation_sep1034_defaults(ctx: nbmcp.ToolContext) -> str:
    """Tests elicitation with default values per SEP-1034"""
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        },
        "required": [],
    }
    answer = await ctx.elicit("Please review and update the form fields with defaults", schema)
    return f"Elicitation completed: action={answer.action}, content={json.dumps(getattr(answer, 'data', {}) or {})}"


@nbmcp.tool(read_only=True)
async def test_elicitation_sep1330_enums(ctx: nbmcp.ToolContext) -> str:
    """Tests elicitation with enum schema improvements per SEP-1330"""
    titled = [{"const": f"value{i}", "title": t} for i, t in enumerate(("First", "Second", "Third"), 1)]
    schema = {
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Select one option",
                "enum": ["option1", "option2", "option3"],
            },
            "titledSingle": {
                "type": "string",
                "description": "Select one option with titles",
                "oneOf": [{**t, "title": f"{t['title']} Option"} for t in titled],
            },
            "legacyEnum": {
                "type": "string",
                "description": "Select one option (legacy)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Select multiple options",
                "minItems": 1,
                "maxItems": 3,
                "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
            },
            "titledMulti": {
                "type": "array",
                "description": "Select multiple options with titles",
                "minItems": 1,
                "maxItems": 3,
                "items": {"anyOf": [{**t, "title": f"{t['title']} Choice"} for t in titled]},
            },
        },
        "required": [],
    }
    answer = await ctx.elicit("Please select options from the enum fields", schema)
    return f"Elicitation completed: action={answer.action}, content={json.dumps(getattr(answer, 'data', {}) or {})}"


JSON_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {"address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
    "additionalProperties": False,
}


@nbmcp.tool(read_only=True, input_schema=JSON_SCHEMA_2020_12)
def json_schema_2020_12_tool(name: str | None = None, address: dict | None = None) -> str:
    """Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)"""
    args = {k: v for k, v in (("name", name), ("address", address)) if v is not None}
    return f"JSON Schema 2020-12 tool called with: {json.dumps(args)}"


# -- resources --------------------------------------------------------------------------------------------


@nbmcp.resource("test://static-text", name="static-text", mime_type="text/plain")
def static_text() -> str:
    """A static text resource for testing"""
    return "This is the content of the static text resource."


@nbmcp.resource("test://static-binary", name="static-binary", mime_type="image/png")
def static_binary() -> bytes:
    """A static binary resource (image) for testing"""
    return base64.b64decode(PNG_1PX)


@nbmcp.resource("test://template/{id}/data", name="template", mime_type="application/json")
def template(id: str) -> str:
    """A resource template with parameter substitution"""
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


@nbmcp.resource("test://watched-resource", name="watched-resource", mime_type="text/plain")
def watched_resource() -> str:
    """A resource that auto-updates every 3 seconds"""
    return "Watched resource content"


# -- prompts ----------------------------------------------------------------------------------------------


@nbmcp.prompt(title="Simple Test Prompt")
def test_simple_prompt() -> str:
    """A simple prompt without arguments"""
    return "This is a simple prompt for testing."


@nbmcp.prompt(title="Prompt With Arguments")
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    """A prompt with required arguments

    Args:
        arg1: First test argument
        arg2: Second test argument
    """
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@nbmcp.prompt(title="Prompt With Embedded Resource")
def test_prompt_with_embedded_resource(resourceUri: str) -> list[dict[str, Any]]:
    """A prompt that includes an embedded resource

    Args:
        resourceUri: URI of the resource to embed
    """
    return [
        {"role": "user", "content": _embedded(resourceUri, "Embedded resource content for testing.")},
        {"role": "user", "content": TextContent(type="text", text="Please process the embedded resource above.")},
    ]


@nbmcp.prompt(title="Prompt With Image")
def test_prompt_with_image() -> list[dict[str, Any]]:
    """A prompt that includes image content"""
    return [
        {"role": "user", "content": _image()},
        {"role": "user", "content": TextContent(type="text", text="Please analyze the image above.")},
    ]
