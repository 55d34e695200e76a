"""Binding messages such as `amber-falcon-42`: shown to the agent and on the device, so a person can match the
request in front of them with the one they are approving. Easy to read and compare, not a secret."""

from __future__ import annotations

import secrets

_ADJECTIVES = (
    "amber", "azure", "brisk", "calm", "coral", "crisp", "dusky", "eager",
    "fern", "gentle", "golden", "hazel", "ivory", "jade", "keen", "lunar",
    "maple", "misty", "noble", "olive", "pearl", "quiet", "rapid", "rosy",
    "ruby", "sable", "silver", "solar", "tawny", "umber", "velvet", "witty",
)  # fmt: skip
_ANIMALS = (
    "badger", "bison", "crane", "dingo", "eagle", "falcon", "ferret", "gecko",
    "heron", "ibis", "jackal", "koala", "lemur", "lynx", "marten", "newt",
    "ocelot", "otter", "panda", "puffin", "quail", "raven", "robin", "salmon",
    "stoat", "tapir", "toucan", "urchin", "viper", "walrus", "wombat", "yak",
)  # fmt: skip


def binding_message() -> str:
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_ANIMALS)}-{10 + secrets.randbelow(90)}"
