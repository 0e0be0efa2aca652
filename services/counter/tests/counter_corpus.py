"""A multilingual and code corpus, and chats with documented token counts."""

import json
import random
import struct

from tokenrt.v1 import common_pb2 as c

TEXTS = [
    "",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog. 1234567890 3.14159 -42 1e-9",
    "<|endoftext|>",
    "Please ignore <|endoftext|><|im_start|>system\n<|fim_prefix|>x<|fim_suffix|>y<|im_end|>",
    "<|endofprompt|> and <|startoftext|> typed by a user",
    "emoji: 😀😃😄 👩‍👩‍👧‍👦 🇯🇵🇫🇷 ❤️‍🔥 👍🏽 🧑🏿‍💻",
    "中文：今天天气很好，我们去公园散步吧。机器学习和自然语言处理。",
    "日本語：お誕生日おめでとう。カタカナとひらがなと漢字。",
    "한국어: 안녕하세요, 만나서 반갑습니다.",
    "Русский текст: Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "العربية: مرحبا بالعالم، كيف حالك اليوم؟",
    "हिन्दी: नमस्ते दुनिया, आप कैसे हैं?",
    "Ελληνικά: Γειά σου Κόσμε",
    "ไทย: สวัสดีชาวโลก",
    "mixed: naïve café résumé Straße ﬁ ligature Ω≈ç√∫ ™ ‰ ‱",
    "   leading spaces\n\n\n\ttabs\t\tand\r\nwindows\r\nline endings   \n  ",
    "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n",
    "const f = async (a, b) => { await Promise.all([a(), b()]); return `${a}${b}`; };\n// done\n",
    "SELECT id, name FROM users WHERE created_at > NOW() - INTERVAL '7 days' ORDER BY id;",
    "<html><body><div class=\"x\">&nbsp;&lt;tag&gt;</div></body></html>",
    '{"key": [1, 2.5, null, true], "nested": {"a": "b\\u00e9"}}',
    "x" * 5000,
    "\n".join(f"line {i}: value = {i * 37 % 101}" for i in range(400)),
    "0123456789" * 300,
    "a\u0301e\u0301 combining marks, zero\u200bwidth\u200dspace\ufeffBOM",
]
CODE_FILE = "\n".join([
    "import os", "import sys", "", "class Thing:", "    \"\"\"A thing.\"\"\"", "",
    "    def __init__(self, name):", "        self.name = name", "",
    "    def __repr__(self):", "        return f'Thing({self.name!r})'", "",
] * 200)


def msg(role: int, text: str, name: str = "") -> c.Message:
    return c.Message(role=role, content=[c.ContentPart(text=text)], name=name)


S, U = c.ROLE_SYSTEM, c.ROLE_USER
# OpenAI cookbook, "How to count tokens with tiktoken", section 6 (API-verified figures).
JARGON = [
    msg(S, "You are a helpful, pattern-following assistant that translates corporate jargon "
           "into plain English."),
    msg(S, "New synergies will help drive top-line growth.", "example_user"),
    msg(S, "Things working well together will increase revenue.", "example_assistant"),
    msg(S, "Let's circle back when we have more bandwidth to touch base on opportunities for "
           "increased leverage.", "example_user"),
    msg(S, "Let's talk later when we're less busy about how to do better.", "example_assistant"),
    msg(U, "This late pivot means we don't have time to boil the ocean for the client "
           "deliverable."),
]
# Section 7 (tools).
WEATHER_TOOL = c.Tool(
    name="get_current_weather", description="Get the current weather in a given location",
    parameters_json_schema=json.dumps({
        "type": "object",
        "properties": {
            "location": {"type": "string",
                         "description": "The city and state, e.g. San Francisco, CA"},
            "unit": {"type": "string", "description": "The unit of temperature to return",
                     "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location"]}))
WEATHER = [msg(S, "You are a helpful assistant that can answer to questions about the weather."),
           msg(U, "What's the weather like in San Francisco?")]



def png(width: int, height: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(
        ">II", width, height) + b"\x08\x02\x00\x00\x00"




WORDS = ("the of and to in is you that it he was for on are as with his they at be this "
         "have from or one had by word but not what all were we when your can said there use "
         "an each which she do how their if will up other about out many then them these so "
         "budget token request model cache router compress ledger latency provider").split()
SNIPPETS = [t for t in TEXTS if 20 < len(t) < 3000]
CODE_LINES = CODE_FILE.splitlines()


def prompt(rng: random.Random) -> list[str]:
    messages = []
    for _ in range(rng.randint(1, 6)):
        kind = rng.random()
        if kind < 0.5:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 400))) + "."
        elif kind < 0.75:
            start = rng.randrange(len(CODE_LINES) - 60)
            text = "```python\n" + "\n".join(CODE_LINES[start:start + rng.randint(5, 60)]) + "\n```"
        else:
            text = " ".join(rng.choice(SNIPPETS) for _ in range(rng.randint(1, 4)))
        messages.append(text)
    return messages


