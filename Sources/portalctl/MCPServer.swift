import ArgumentParser
import MCP
import PortalControl

extension Portalctl {
    /// `portalctl mcp`: the control socket's queries as MCP tools on stdio,
    /// so that an agent can inspect a live guest.
    struct MCPCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "mcp", abstract: "Serve the guest queries as MCP tools on standard input and output.")

        @Option(name: .long, help: "The control socket (the plugin's control=PATH).")
        var socket: String

        func run() async throws {
            let path = socket
            let server = Server(name: "portal", version: "0.1.0",
                                capabilities: .init(tools: .init(listChanged: false)))
            _ = await server.withMethodHandler(ListTools.self) { _ in
                ListTools.Result(tools: MCPTools.all.map(\.tool))
            }
            _ = await server.withMethodHandler(CallTool.self) { call in
                guard let tool = MCPTools.all.first(where: { $0.tool.name == call.name }) else {
                    return CallTool.Result(content: [.text(text: "no tool named \(call.name)", annotations: nil, _meta: nil)],
                                           isError: true)
                }
                do {
                    let arguments = try tool.arguments(call.arguments ?? [:])
                    let connection = try QMPConnection(path: path)
                    let value = try connection.execute(tool.command, arguments)
                    return CallTool.Result(content: [.text(text: value.serialized, annotations: nil, _meta: nil)],
                                           isError: false)
                } catch {
                    return CallTool.Result(content: [.text(text: "\(error)", annotations: nil, _meta: nil)], isError: true)
                }
            }
            try await server.start(transport: StdioTransport())
            await server.waitUntilCompleted()
        }
    }
}

/// One MCP tool: its schema and the control command it runs.
struct MCPTool: Sendable {
    let tool: Tool
    /// The QMP command behind it.
    let command: String
    /// Tool argument names and the QMP argument each becomes, in order.
    let parameters: [(name: String, argument: String, kind: Kind, required: Bool)]

    enum Kind: Sendable { case integer, string }

    /// The QMP arguments for a call's MCP arguments.
    /// - Throws: `ClientError` for a missing or mistyped argument.
    func arguments(_ given: [String: Value]) throws -> [(String, JSONValue)] {
        var arguments: [(String, JSONValue)] = []
        for parameter in parameters {
            guard let value = given[parameter.name] else {
                if parameter.required { throw ClientError(message: "argument '\(parameter.name)' is missing") }
                continue
            }
            switch (parameter.kind, value) {
            case (.integer, .int(let number)) where number >= 0:
                arguments.append((parameter.argument, .int(Int64(number))))
            case (.integer, .double(let number)) where number >= 0 && number == number.rounded() && number < 1.8e19:
                arguments.append((parameter.argument, .uint64(UInt64(number))))
            case (.integer, .string(let text)):
                guard let number = Number(argument: text) else {
                    throw ClientError(message: "argument '\(parameter.name)' expects a number (decimal or 0x hex)")
                }
                arguments.append((parameter.argument, .uint64(number.value)))
            case (.string, .string(let text)):
                arguments.append((parameter.argument, .string(text)))
            default:
                throw ClientError(message: "argument '\(parameter.name)' has the wrong type")
            }
        }
        return arguments
    }
}

enum MCPTools {
    static func schema(_ properties: [(String, String, String)], required: [String]) -> Value {
        .object([
            "type": .string("object"),
            "properties": .object(Dictionary(uniqueKeysWithValues: properties.map { name, type, description in
                (name, Value.object(["type": .string(type), "description": .string(description)]))
            })),
            "required": .array(required.map { .string($0) }),
        ])
    }

    static let addressDescription = "Guest virtual address: a number, or a string in decimal or 0x hex."

    static let all: [MCPTool] = [
        MCPTool(tool: Tool(name: "portal_info",
                           description: "The plugin, the guest's architecture and layout, the op table, live conversations.",
                           inputSchema: schema([], required: [])),
                command: "query-portal", parameters: []),
        MCPTool(tool: Tool(name: "portal_stats",
                           description: "Round trips per op and response code, conversations, latency percentiles.",
                           inputSchema: schema([], required: [])),
                command: "query-stats", parameters: []),
        MCPTool(tool: Tool(name: "read_memory",
                           description: "Read guest virtual memory; returns {address, size, hex}.",
                           inputSchema: schema([("address", "string", addressDescription),
                                                ("size", "integer", "Number of bytes (1 to 262144).")],
                                               required: ["address", "size"])),
                command: "guest-memory-read",
                parameters: [("address", "address", .integer, true), ("size", "size", .integer, true)]),
        MCPTool(tool: Tool(name: "read_string",
                           description: "Read the NUL-terminated string at an address; returns {address, length, string, hex}.",
                           inputSchema: schema([("address", "string", addressDescription),
                                                ("max_length", "integer", "Stop after this many bytes.")],
                                               required: ["address"])),
                command: "guest-memory-read-string",
                parameters: [("address", "address", .integer, true), ("max_length", "max-length", .integer, false)]),
        MCPTool(tool: Tool(name: "write_memory",
                           description: "Write bytes, given as hex digits, into guest virtual memory.",
                           inputSchema: schema([("address", "string", addressDescription),
                                                ("hex", "string", "The bytes as hex digits, e.g. 2a000000.")],
                                               required: ["address", "hex"])),
                command: "guest-memory-write",
                parameters: [("address", "address", .integer, true), ("hex", "hex", .string, true)]),
        MCPTool(tool: Tool(name: "guest_time",
                           description: "The guest's monotonic clock in nanoseconds.",
                           inputSchema: schema([], required: [])),
                command: "guest-get-time", parameters: []),
    ]
}
