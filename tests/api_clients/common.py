"""Shared by the client scripts: where the server is, and the schemas the
forced and structured paths must satisfy every time."""

import os
from typing import List, Literal

from pydantic import BaseModel, ConfigDict, Field

API = os.environ["SKULK_API"]
KEY = os.environ["SKULK_KEY"]
MODEL = os.environ["SKULK_MODEL"]
RANKS = int(os.environ["SKULK_RANKS"])

# Bounded strings keep a 135M model at temperature 0.8 from writing until
# its token budget runs out.
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather forecast for a city",
        "parameters": WEATHER_SCHEMA,
    },
}

TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "enum": ["UTC", "CET", "PST"]}},
            "required": ["zone"],
        },
    },
}


class WeatherArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: str = Field(max_length=40)
    unit: Literal["celsius", "fahrenheit"]
    days: int = Field(ge=1, le=7)


class TimeArgs(BaseModel):
    zone: Literal["UTC", "CET", "PST"]


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: str = Field(max_length=30)
    country: Literal["France", "Spain", "Italy"]


class Pet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=20)
    kind: Literal["cat", "dog", "bird"]
    age: int = Field(ge=0, le=30)


class Owner(BaseModel):
    """Nested objects, an array with bounds, enums, required fields."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=30)
    pets: List[Pet] = Field(min_length=1, max_length=3)
    address: Address


ASK_WEATHER = [{"role": "user", "content": "What will the weather be in Paris for the next 3 days?"}]
ASK_OWNER = [
    {"role": "system", "content": "You write JSON records about pet owners."},
    {"role": "user", "content": "Describe Marie from Lyon, France, who has a cat and a dog."},
]


def check(cond, what):
    if not cond:
        raise AssertionError(what)
