"""portalctl mcp with the reference MCP client (PyPI mcp), against the running control guest."""
import asyncio
import json

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

CONTRACT_PAGE = 0x101000


async def session_tests(portalctl, socket_path, check, expect_equal):
    parameters = StdioServerParameters(command=portalctl, args=["mcp", "--socket", socket_path])
    async with stdio_client(parameters) as (read, write):
        async with ClientSession(read, write) as session:
            info = await session.initialize()
            expect_equal("mcp-server-info", (info.serverInfo.name, info.serverInfo.version), ("portal", "0.1.0"))
            tools = (await session.list_tools()).tools
            expect_equal("mcp-list-tools", [tool.name for tool in tools],
                         ["portal_info", "portal_stats", "read_memory", "read_string", "write_memory", "guest_time",
                          "list_processes", "process_info", "process_mappings", "process_fds", "process_environment",
                          "process_arguments", "read_file", "run_program", "symbol_address"])
            read_memory = next(tool for tool in tools if tool.name == "read_memory")
            expect_equal("mcp-read-memory-schema", (read_memory.inputSchema["required"],
                                                    sorted(read_memory.inputSchema["properties"])),
                         (["address", "size"], ["address", "size"]))
            result = await session.call_tool("read_memory", {"address": "0x101000", "size": 8})
            expect_equal("mcp-call-read-memory", (result.isError, json.loads(result.content[0].text)),
                         (False, {"address": CONTRACT_PAGE, "size": 8, "hex": "1122334455667788"}))
            result = await session.call_tool("read_string", {"address": CONTRACT_PAGE + 8})
            expect_equal("mcp-call-read-string", (result.isError, json.loads(result.content[0].text)["string"]),
                         (False, "portal-contract"))
            result = await session.call_tool("read_memory", {"address": 16, "size": 4})
            expect_equal("mcp-call-error", (result.isError, result.content[0].text),
                         (True, "guest-memory-read: reading 4 bytes at 0x10 stopped after 0 bytes (READ_FAIL)"))


def run(portalctl, socket_path, check, expect_equal):
    asyncio.run(session_tests(portalctl, socket_path, check, expect_equal))
