import PortalEngine

/// Built-in work selected with `demo=NAME`.
enum Demonstrations {
    static let names: [String] = []

    /// Attaches demonstration `name`; false (logged) if there is none.
    static func install(_ name: String, on engine: PortalEngine) -> Bool {
        engine.logger.error("argument 'demo=\(name)': no such demonstration; known: \(names.joined(separator: ", "))")
        return false
    }
}
