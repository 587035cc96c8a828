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
                    let value = try tool.run?(connection, arguments) ?? connection.execute(tool.command, arguments)
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
    /// For a tool that takes more than one command (a whole file): runs
    /// them, given the QMP arguments; nil runs `command` once.
    var run: (@Sendable (QMPConnection, [(String, JSONValue)]) throws -> JSONValue)? = nil

    enum Kind: Sendable { case integer, string, strings }

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
            case (.strings, .array(let items)):
                var strings: [JSONValue] = []
                for item in items {
                    guard case .string(let text) = item else {
                        throw ClientError(message: "argument '\(parameter.name)' expects an array of strings")
                    }
                    strings.append(.string(text))
                }
                arguments.append((parameter.argument, .array(strings)))
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
                type == "array"
                    ? (name, Value.object(["type": .string(type), "items": .object(["type": .string("string")]),
                                           "description": .string(description)]))
                    : (name, Value.object(["type": .string(type), "description": .string(description)]))
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
        MCPTool(tool: Tool(name: "list_processes",
                           description: "Every process of the guest: [{pid, ppid, uid, gid, euid, egid, create-time, name}].",
                           inputSchema: schema([], required: [])),
                command: "query-processes", parameters: []),
        MCPTool(tool: Tool(name: "process_info",
                           description: "One process in detail (task, mm, heap, stack, code and data bounds).",
                           inputSchema: schema([("pid", "integer", pidDescription)], required: ["pid"])),
                command: "query-process", parameters: [("pid", "pid", .integer, true)]),
        MCPTool(tool: Tool(name: "process_mappings",
                           description: "A process's memory mappings: [{start, end, perms, offset, dev, inode, name}]; with address, the one containing it.",
                           inputSchema: schema([("pid", "integer", pidDescription),
                                                ("address", "string", addressDescription)], required: ["pid"])),
                command: "query-mappings",
                parameters: [("pid", "pid", .integer, true), ("address", "address", .integer, false)]),
        MCPTool(tool: Tool(name: "process_fds",
                           description: "A process's open file descriptors: [{fd, path}].",
                           inputSchema: schema([("pid", "integer", pidDescription)], required: ["pid"])),
                command: "query-fds", parameters: [("pid", "pid", .integer, true)]),
        MCPTool(tool: Tool(name: "process_environment",
                           description: "A process's environment: [{name, value}].",
                           inputSchema: schema([("pid", "integer", pidDescription)], required: ["pid"])),
                command: "query-environment", parameters: [("pid", "pid", .integer, true)]),
        MCPTool(tool: Tool(name: "process_arguments",
                           description: "A process's argv: [strings].",
                           inputSchema: schema([("pid", "integer", pidDescription)], required: ["pid"])),
                command: "query-argv", parameters: [("pid", "pid", .integer, true)]),
        MCPTool(tool: Tool(name: "read_file",
                           description: "A whole guest file as text: {path, count, text}.",
                           inputSchema: schema([("path", "string", "The file's absolute path in the guest.")],
                                               required: ["path"])),
                command: "guest-file-read", parameters: [("path", "path", .string, true)],
                run: { connection, arguments in
                    let path = arguments.first?.1.stringValue ?? ""
                    let bytes = try readGuestFile(connection, path: path, extra: [])
                    return .object([("path", .string(path)), ("count", .int(Int64(bytes.count))),
                                    ("text", .string(String(decoding: bytes, as: UTF8.self)))])
                }),
        MCPTool(tool: Tool(name: "run_program",
                           description: "Run a program in the guest, wait for it: {exitcode, output}.",
                           inputSchema: schema([("path", "string", "The program's absolute path."),
                                                ("args", "array", "Its arguments after argv[0].")],
                                               required: ["path"])),
                command: "guest-exec",
                parameters: [("path", "path", .string, true), ("args", "arg", .strings, false)],
                run: { connection, arguments in
                    let started = try connection.execute("guest-exec", arguments + [("capture-output", .bool(true))])
                    let status = try connection.execute("guest-exec-status", [("pid", started["pid"] ?? .null)])
                    let output = status["out-data"]?.stringValue.flatMap(base64Decode) ?? []
                    return .object([("exitcode", status["exitcode"] ?? .null),
                                    ("output", .string(String(decoding: output, as: UTF8.self)))])
                }),
        MCPTool(tool: Tool(name: "symbol_address",
                           description: "The address of a kernel symbol: {name, address}.",
                           inputSchema: schema([("name", "string", "The symbol, e.g. do_exit.")], required: ["name"])),
                command: "query-symbol", parameters: [("name", "name", .string, true)]),
    ]

    static let pidDescription = "The guest process id."
}
