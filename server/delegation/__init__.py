"""Delegations (docs/delegations.md): an agent asks to act for the user towards an audience; a trusted device
decides with a signed statement; an approval yields a short-lived signed delegation token (JWT)."""
