/// Per-vCPU objects read on every trap. An element loaded from an array of
/// class references costs an atomic retain and release; these are lent out
/// unretained instead, which is safe because `owned` keeps them alive for
/// as long as the emulator calls the plugin.
struct BorrowedObjects<Object: AnyObject>: @unchecked Sendable {
    let owned: [Object]
    private let unretained: [Unmanaged<Object>]

    init(_ objects: [Object]) {
        owned = objects
        unretained = objects.map { Unmanaged.passUnretained($0) }
    }

    var count: Int { owned.count }

    /// Calls `body` with object `index`, or returns nil if there is none.
    @inline(__always)
    func with<R>(_ index: Int, _ body: (Object) -> R) -> R? {
        guard unretained.indices.contains(index) else { return nil }
        return unretained[index]._withUnsafeGuaranteedRef(body)
    }
}
