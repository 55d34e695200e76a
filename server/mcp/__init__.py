"""The OAuth-protected MCP resource server: `/mcp` over Streamable HTTP (JSON-RPC 2.0), sessions kept in the
database, and the identity and delegation tools."""
