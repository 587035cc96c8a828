import Synchronization

/// One thread's right to read the handler table: each vCPU has its own.
///
/// `epoch` is odd while its vCPU is reading the table and counts its reads,
/// so that a writer can tell when a table it replaced is no longer read by
/// anyone (quiescent-state reclamation). Only its vCPU's thread writes it.
final class HandlerReader: Sendable {
    let epoch = Atomic<UInt64>(0)
}

/// Work attached to hypercall numbers.
///
/// Read on every trap and changed rarely. Readers (vCPU threads) look a
/// number up without a lock, in O(1): the table is an immutable
/// open-addressed hash table, replaced as a whole on every attach or
/// detach. A replaced table is freed as soon as every vCPU that was
/// reading at that moment has finished that read, which each write checks
/// for: the memory kept is the current table plus, at most, tables replaced
/// while a vCPU was inside one look-up (not one snapshot per attach or
/// detach until unload).
///
/// The reader announces itself with a sequentially consistent store to its
/// own epoch (no other thread writes that cache line) before it loads the
/// table, and the writer loads every epoch after it swapped the table, so
/// either the writer sees the reader inside, or the reader sees the new table.
final class HandlerRegistry: @unchecked Sendable {
    /// An immutable open-addressed table: `keys[i]` is a number or `empty`,
    /// `factories[i]` its work; linear probing, at most half full.
    final class Table: @unchecked Sendable {
        static let empty = UInt64.max
        let keys: UnsafeMutablePointer<UInt64>
        let factories: [WorkFactory?]
        let mask: Int

        init(_ entries: [UInt32: WorkFactory]) {
            var capacity = 8
            while capacity < entries.count * 2 { capacity *= 2 }
            mask = capacity - 1
            keys = .allocate(capacity: capacity)
            keys.initialize(repeating: Self.empty, count: capacity)
            var factories = [WorkFactory?](repeating: nil, count: capacity)
            for (number, factory) in entries {
                var index = Self.home(number, mask)
                while keys[index] != Self.empty { index = (index + 1) & mask }
                keys[index] = UInt64(number)
                factories[index] = factory
            }
            self.factories = factories
        }

        deinit { keys.deallocate() }

        /// Fibonacci hashing: numbers that differ in low bits spread out.
        @inline(__always)
        static func home(_ number: UInt32, _ mask: Int) -> Int {
            Int(truncatingIfNeeded: (UInt64(number) &* 0x9e37_79b9_7f4a_7c15) >> 40) & mask
        }

        @inline(__always)
        func index(of number: UInt32) -> Int? {
            var index = Self.home(number, mask)
            while true {
                let key = keys[index]
                if key == UInt64(number) { return index }
                if key == Self.empty { return nil }
                index = (index + 1) & mask
            }
        }
    }

    private struct WriterState {
        /// The attached work.
        var entries: [UInt32: WorkFactory] = [:]
        /// The observers of each number, in the order they were added
        /// (`ObservedWork`); the table holds them composed with the work.
        var observers: [UInt32: [(name: String, factory: WorkFactory)]] = [:]
        var readers: [HandlerReader] = []
        /// Replaced tables, with each reader's epoch right after the swap.
        var retired: [(table: Unmanaged<Table>, epochs: [UInt64])] = []
    }

    private let current: Atomic<Unmanaged<Table>>
    private let writer = Lock(WriterState())

    init() {
        current = Atomic(Unmanaged.passRetained(Table([:])))
    }

    deinit {
        current.load(ordering: .acquiring).release()
        writer.withLock { state in
            for (table, _) in state.retired { table.release() }
        }
    }

    /// Lets `reader` read the table; every vCPU registers once, before its first trap.
    func register(_ reader: HandlerReader) {
        writer.withLock { $0.readers.append(reader) }
    }

    /// Runs `body` on the current table, announced through `reader`.
    @inline(__always)
    private func reading<R>(_ reader: HandlerReader, _ body: (Table) -> R) -> R {
        let inside = reader.epoch.load(ordering: .relaxed) &+ 1
        reader.epoch.store(inside, ordering: .sequentiallyConsistent)
        let result = current.load(ordering: .sequentiallyConsistent)._withUnsafeGuaranteedRef(body)
        reader.epoch.store(inside &+ 1, ordering: .releasing)
        return result
    }

    /// Whether work is attached to `number`, without copying its factory.
    @inline(__always)
    func contains(_ number: UInt32, reader: HandlerReader) -> Bool {
        reading(reader) { $0.index(of: number) != nil }
    }

    @inline(__always)
    func lookup(_ number: UInt32, reader: HandlerReader) -> WorkFactory? {
        reading(reader) { table in table.index(of: number).flatMap { table.factories[$0] } }
    }

    func set(_ number: UInt32, _ factory: WorkFactory) {
        _ = publish { $0.entries.updateValue(factory, forKey: number); return true }
    }

    func remove(_ number: UInt32) -> Bool {
        publish { $0.entries.removeValue(forKey: number) != nil }
    }

    /// Adds observer `name` of `number`, or replaces the one of that name.
    func observe(_ number: UInt32, as name: String, _ factory: WorkFactory) {
        _ = publish { state in
            var observers = state.observers[number, default: []]
            if let index = observers.firstIndex(where: { $0.name == name }) {
                observers[index].factory = factory
            } else {
                observers.append((name, factory))
            }
            state.observers[number] = observers
            return true
        }
    }

    /// Removes observer `name` of `number`; whether there was one.
    func stopObserving(_ number: UInt32, as name: String) -> Bool {
        publish { state in
            guard var observers = state.observers[number],
                  let index = observers.firstIndex(where: { $0.name == name }) else { return false }
            observers.remove(at: index)
            state.observers[number] = observers.isEmpty ? nil : observers
            return true
        }
    }

    /// What the table serves: each number's observers, then its work.
    private static func served(_ state: WriterState) -> [UInt32: WorkFactory] {
        var served = state.entries
        for (number, observers) in state.observers {
            let attached = state.entries[number]
            served[number] = WorkFactory { call in
                ObservedWork(call: call, observers: observers, attached: attached)
            }
        }
        return served
    }

    /// Tables alive now: the current one and those replaced but maybe still
    /// being read (for tests of the memory bound).
    var tablesAlive: Int { writer.withLock { 1 + $0.retired.count } }

    private func publish(_ change: (inout WriterState) -> Bool) -> Bool {
        writer.withLock { state in
            guard change(&state) else { return false }
            let replaced = current.exchange(Unmanaged.passRetained(Table(Self.served(state))),
                                            ordering: .sequentiallyConsistent)
            let epochs = state.readers.map { $0.epoch.load(ordering: .sequentiallyConsistent) }
            state.retired.append((replaced, epochs))
            // Free every replaced table no reader can still be in: each
            // reader was outside (even) right after the swap, or has moved on.
            let readers = state.readers
            state.retired.removeAll { retired in
                for (index, epoch) in retired.epochs.enumerated()
                where epoch & 1 == 1 && readers[index].epoch.load(ordering: .acquiring) == epoch {
                    return false
                }
                retired.table.release()
                return true
            }
            return true
        }
    }
}
