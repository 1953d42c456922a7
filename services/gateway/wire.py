"""OpenAI's chat-completions wire format: the request we accept, the answers and stream events we send.

Accepted: roles ``system``, ``developer``, ``user``, ``assistant`` (with ``tool_calls``) and ``tool``;
content as a string or an array of text parts; ``max_tokens`` or ``max_completion_tokens``,
``temperature``, ``top_p``, ``seed``, ``presence_penalty``, ``frequency_penalty``, ``stop``, ``user``,
``n`` (1 to 8), ``response_format`` (``text``, ``json_object``, ``json_schema``), ``tools`` (functions),
``tool_choice``, ``parallel_tool_calls``, ``logprobs`` and ``top_logprobs``, ``stream`` and
``stream_options``. An OpenAI-compatible upstream gets them as sent; our own pipeline honours what it can
and refuses the rest (:meth:`ChatCompletionRequest.pipeline_refusal`). Anything else is refused with 400
``invalid_request_error`` naming the ``param``, as OpenAI does, never silently ignored. So is a
body that is not JSON (invalid UTF-8, a lone surrogate, nesting past Python's recursion limit, an integer
over 4,300 digits) and a number that is not finite (``NaN``, ``Infinity``, ``1e400``): the parser takes
those literals, the model refuses them where they stand, naming the field.

The models here are also the OpenAPI document's schemas (``app.py`` publishes them): the request, the
``chat.completion`` answer, the stream's chunk and the error shape, so a client generator or a fuzzer
sees the contract that is enforced.
"""

from __future__ import annotations

import json
import re
import time
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

MAX_CONTENT_CHARS = 200_000
"""Per message, over all its text parts."""
MAX_CHOICES = 8
"""``n`` at most: each choice is a whole generation billed to the tenant."""


class InvalidRequest(ValueError):
    """A request we refuse with 400; ``param`` names the offending field (``messages[0].role``)."""

    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.param = param


class _Strict(BaseModel):
    # NaN and infinities parse (Python's json takes the literals, 1e400 overflows to inf); OpenAI refuses
    # them and so do we, where they stand: "temperature: Input should be a finite number".
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class TextPart(_Strict):
    type: str = Field(json_schema_extra={"const": "text"})
    text: str = Field(max_length=MAX_CONTENT_CHARS)

    @field_validator("type")
    @classmethod
    def _text_only(cls, value: str) -> str:
        if value != "text":
            raise ValueError(f"only 'text' content parts are supported, not {value!r}")
        return value


def _content_kind(value: Any) -> str:
    return "as-null" if value is None else "as-string" if isinstance(value, str) else "as-parts"


Content = Annotated[
    Annotated[str, Tag("as-string")]
    | Annotated[list[TextPart], Field(min_length=1, max_length=256), Tag("as-parts")]
    | Annotated[None, Tag("as-null")],
    Discriminator(_content_kind),
]
"""The tags name the union's branch in error locations; :func:`parse_request` leaves them out of ``param``."""


class FunctionCall(_Strict):
    name: str = Field(max_length=256)
    arguments: str = Field(max_length=MAX_CONTENT_CHARS)


class ToolCall(_Strict):
    id: str = Field(max_length=256)
    type: Literal["function"]
    function: FunctionCall


class ChatMessage(_Strict):
    # What each role requires, in the schema too (so no schema-valid message is refused): a `tool` message
    # needs `tool_call_id`, which no other role may have; only an `assistant` message has `tool_calls`, and
    # only one with `tool_calls` may leave `content` null or out.
    model_config = ConfigDict(  # merged with _Strict's
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"role": {"const": "tool"}}},
                    "then": {
                        "required": ["tool_call_id"],
                        "properties": {"tool_call_id": {"type": "string", "minLength": 1}},
                    },
                    "else": {"properties": {"tool_call_id": {"type": "null"}}},
                },
                {
                    "if": {"properties": {"role": {"const": "assistant"}}},
                    "else": {"properties": {"tool_calls": {"type": "null"}}},
                },
                {
                    "anyOf": [
                        {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}},
                        {
                            "required": ["tool_calls"],
                            "properties": {
                                "role": {"const": "assistant"},
                                "tool_calls": {"type": "array"},
                            },
                        },
                    ]
                },
            ]
        },
    )
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Content = None
    name: str | None = Field(default=None, max_length=256)
    tool_call_id: str | None = Field(default=None, max_length=256)
    tool_calls: list[ToolCall] | None = Field(default=None, min_length=1, max_length=128)

    @property
    def text(self) -> str:
        """The content as one string (text parts joined by newlines)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content)


class StreamOptions(_Strict):
    include_usage: bool = False


class FunctionDefinition(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = Field(default=None, max_length=MAX_CONTENT_CHARS)
    parameters: dict[str, Any] | None = None
    """A JSON Schema object, passed to the upstream as it is."""
    strict: bool | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Strict):
    name: str = Field(min_length=1, max_length=64)


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("as-mode")]
    | Annotated[NamedToolChoice, Tag("as-function")],
    Discriminator(lambda value: "as-function" if isinstance(value, dict) else "as-mode"),
]
"""A mode, or the one function to call (the tags keep the branch out of an error's ``param``)."""


class JsonSchemaFormat(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = Field(default=None, max_length=MAX_CONTENT_CHARS)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Strict):
    model_config = ConfigDict(  # merged with _Strict's
        json_schema_extra={
            "if": {"properties": {"type": {"const": "json_schema"}}},
            "then": {"required": ["json_schema"]},
            "else": {"not": {"required": ["json_schema"]}},
        },
    )
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is required with type 'json_schema', and allowed with it only")
        return self

    @property
    def output_type(self) -> str:
        """``gen_ai.output.type``: ``text`` or ``json``."""
        return "text" if self.type == "text" else "json"


class ChatCompletionRequest(_Strict):
    model_config = ConfigDict(  # merged with _Strict's
        json_schema_extra={
            "allOf": [
                # stream_options only with stream: true
                {
                    "if": {"required": ["stream"], "properties": {"stream": {"const": True}}},
                    "else": {"properties": {"stream_options": {"type": "null"}}},
                },
                # max_tokens or max_completion_tokens, not both
                {
                    "not": {
                        "required": ["max_tokens", "max_completion_tokens"],
                        "properties": {
                            "max_tokens": {"type": "integer"},
                            "max_completion_tokens": {"type": "integer"},
                        },
                    }
                },
            ]
        },
    )
    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=4096)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    stop: Annotated[
        list[str] | None,
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string", "minLength": 1, "maxLength": 256},
                    {
                        "type": "array",
                        "items": {"type": "string", "minLength": 1, "maxLength": 256},
                        "minItems": 1,
                        "maxItems": 4,
                    },
                    {"type": "null"},
                ]
            }
        ),
    ] = None
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    user: str | None = Field(default=None, max_length=256)
    n: int | None = Field(default=None, ge=1, le=MAX_CHOICES)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = Field(default=None, min_length=1, max_length=128)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop(cls, value: Any) -> Any:
        """A string or up to 4 non-empty strings (OpenAI's limit), kept as a list."""
        if value is None:
            return None
        stops = [value] if isinstance(value, str) else value
        if not (
            isinstance(stops, list)
            and 1 <= len(stops) <= 4
            and all(isinstance(s, str) and 0 < len(s) <= 256 for s in stops)
        ):
            raise ValueError("expected a string or a list of 1 to 4 non-empty strings")
        return stops

    @property
    def output_limit(self) -> int | None:
        return self.max_tokens or self.max_completion_tokens

    def pipeline_refusal(self) -> tuple[str, str] | None:
        """The first parameter our own pipeline cannot honour, and why; None when it honours them all.

        Its engine decodes greedily (temperature scales nothing it samples) and deterministically, one
        choice, plain text, without tools: a ``seed`` is honoured (the answer is a function of the prompt),
        and so is any parameter left at its no-op value (``top_p`` 1, penalties 0, ``n`` 1, ``text``
        output, ``tool_choice`` ``none``, ``logprobs`` false).
        """
        checks = (
            ("top_p", self.top_p not in (None, 1.0), "its engine does not sample (only top_p 1 is honoured)"),
            ("presence_penalty", self.presence_penalty not in (None, 0.0), "no penalties (only 0)"),
            ("frequency_penalty", self.frequency_penalty not in (None, 0.0), "no penalties (only 0)"),
            ("n", self.n not in (None, 1), "it generates one choice"),
            (
                "response_format",
                self.response_format is not None and self.response_format.type != "text",
                "it generates plain text only",
            ),
            (
                "tools",
                self.tools is not None and self.tool_choice != "none",
                "it cannot call tools (tool_choice 'none' is honoured)",
            ),
            ("tool_choice", self.tool_choice not in (None, "none"), "it cannot call tools"),
            ("logprobs", bool(self.logprobs), "it reports no log probabilities"),
            ("top_logprobs", bool(self.top_logprobs), "it reports no log probabilities"),
        )
        return next(((param, why) for param, refused, why in checks if refused), None)

    @property
    def wants_usage(self) -> bool:
        """Whether the client asked for the usage chunk at the end of its stream."""
        return self.stream_options is not None and self.stream_options.include_usage

    def pipeline_payload(self) -> dict[str, Any]:
        """What our orchestrator understands: plain text messages in its three roles."""
        roles = {"developer": "system", "tool": "user"}
        return {
            "model": self.model,
            "messages": [{"role": roles.get(m.role, m.role), "content": m.text} for m in self.messages],
            "max_tokens": self.output_limit,
            "temperature": self.temperature,
        }

    def upstream_payload(self, model: str) -> dict[str, Any]:
        """What an OpenAI-compatible upstream gets: what the client sent, for ``model``; a stream always asks
        for the usage chunk, so token counts (and cost) are known however the client set it."""
        payload = self.model_dump(exclude_unset=True, exclude_none=True, by_alias=True)
        payload["model"] = model
        if self.stream:
            payload["stream_options"] = {"include_usage": True}
        return payload


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_json(raw: bytes) -> Any:
    """The body's JSON value, or :class:`InvalidRequest` (``param`` None) saying why it is none."""
    try:
        payload = json.loads(raw.decode("utf-8"))
        # Escapes of UTF-16 surrogates decode to lone surrogates unless paired: no UTF-8 can carry those,
        # so every later encoding (the answer, the upstream request, telemetry export) would fail on them.
        if _SURROGATE_ESCAPE.search(raw):
            json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise InvalidRequest("body is not valid JSON: nested too deeply", None) from None
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"body is not valid UTF-8: {exc.reason} at byte {exc.start}", None) from None
    except UnicodeEncodeError:
        raise InvalidRequest(
            "body is not valid JSON: a \\u escape names an unpaired surrogate", None
        ) from None
    except ValueError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}", None) from None
    return payload


def parse_request(payload: Any) -> ChatCompletionRequest:
    """The validated request, or :class:`InvalidRequest` saying what is wrong and where."""
    try:
        body = ChatCompletionRequest.model_validate(payload)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # The deepest location is the most precise one (a union reports each branch; its own is deepest).
        first = max(errors, key=lambda e: len(e["loc"]))
        param = _param(first["loc"])
        if first["type"] == "extra_forbidden":
            raise InvalidRequest(f"{param}: unsupported parameter", param) from None
        message = str(first["msg"]).removeprefix("Value error, ")
        if param is None:
            message = "the body must be a JSON object"
        elif param.endswith(".content") and first["type"] == "list_type":
            message = "expected a string or an array of text parts"
        raise InvalidRequest(f"{param or 'body'}: {message}", param) from None
    _check_roles(body)
    return body


def _param(loc: tuple[int | str, ...]) -> str | None:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():  # union branch tags ("as-parts") are not
            out += f".{part}" if out else part
    return out or None


def _check_roles(body: ChatCompletionRequest) -> None:
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        raise InvalidRequest("set max_tokens or max_completion_tokens, not both", "max_completion_tokens")
    if body.stream_options is not None and not body.stream:
        raise InvalidRequest("stream_options is only allowed when stream is true", "stream_options")
    for i, m in enumerate(body.messages):
        where = f"messages[{i}]"
        if m.content is None and not (m.role == "assistant" and m.tool_calls):
            raise InvalidRequest(f"{where}.content: required for a {m.role!r} message", f"{where}.content")
        if len(m.text) > MAX_CONTENT_CHARS:
            raise InvalidRequest(
                f"{where}.content: longer than {MAX_CONTENT_CHARS} characters", f"{where}.content"
            )
        if m.role == "tool" and not m.tool_call_id:
            raise InvalidRequest(
                f"{where}.tool_call_id: required for a 'tool' message", f"{where}.tool_call_id"
            )
        if m.tool_call_id is not None and m.role != "tool":
            raise InvalidRequest(f"{where}.tool_call_id: only on 'tool' messages", f"{where}.tool_call_id")
        if m.tool_calls is not None and m.role != "assistant":
            raise InvalidRequest(f"{where}.tool_calls: only on 'assistant' messages", f"{where}.tool_calls")


def chat_completion(result: dict[str, Any]) -> dict[str, Any]:
    """A ``chat.completion`` object from the orchestrator's answer."""
    usage = result["usage"]
    return {
        "id": f"chatcmpl-{result['id']}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": result["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result["text"]},
                "finish_reason": result["finish_reason"],
            }
        ],
        "usage": {
            "prompt_tokens": usage["input_tokens"],
            "completion_tokens": usage["output_tokens"],
            "total_tokens": usage["input_tokens"] + usage["output_tokens"],
        },
    }


def chunk_event(
    completion_id: str, created: int, model: str, delta: dict[str, str], finish: str | None
) -> bytes:
    """One ``chat.completion.chunk`` server-sent event."""
    chunk = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return data_event(chunk)


def usage_event(completion_id: str, created: int, model: str, input_tokens: int, output_tokens: int) -> bytes:
    """The last chunk of a stream whose client asked for ``stream_options.include_usage``."""
    return data_event(
        {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": {
                "prompt_tokens": input_tokens,
                "completion_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            },
        }
    )


def data_event(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


def error_event(error: dict[str, Any]) -> bytes:
    """A failure after the stream began: it can only be said in-band."""
    return data_event({"error": error})


DONE_EVENT = b"data: [DONE]\n\n"


def error_body(
    message: str, error_type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code or error_type}}


# What the gateway answers, as the OpenAPI document describes it. Only for the schema: answers are built as
# dicts above (and an OpenAI-compatible upstream's answer passes through with any fields it adds).


class ErrorDetail(BaseModel):
    message: str = Field(description="What is wrong, for a person to read.")
    type: str = Field(
        description="The failure's class (``invalid_request_error``, ``model_not_found``, "
        "``upstream_timeout`` ...); also the gateway span's ``error.type``."
    )
    param: str | None = Field(description="The request field at fault (``messages[0].role``), if any.")
    code: str | None = Field(description="A machine-readable code; the ``type`` unless a finer one applies.")


class ErrorResponse(BaseModel):
    """OpenAI's error shape, for every status the gateway answers itself."""

    error: ErrorDetail


class AnsweredToolCall(BaseModel):
    id: str
    type: Literal["function"]
    function: FunctionCall


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None
    tool_calls: list[AnsweredToolCall] | None = Field(
        default=None, description="The calls the model asks for (an upstream's answer to ``tools``)."
    )


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str | None = Field(
        description="``stop``, ``length``, ``tool_calls``, ``content_filter`` or an upstream's own."
    )
    logprobs: dict[str, Any] | None = Field(
        default=None, description="An upstream's log probabilities, as it sent them (``logprobs: true``)."
    )


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """The answer of a request without ``stream: true``."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice] = Field(description="One per ``n`` (an upstream's; our pipeline answers one).")
    usage: CompletionUsage | None = None
