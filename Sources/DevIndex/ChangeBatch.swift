import FpindexAPI

/// The fingerprint changes of one write, collapsed: each touched id once, ascending, with the
/// last change for it (as fpindex applies an `_update`), and all hashes in one array.
struct ChangeBatch: Sendable {
    /// Touched ids, ascending.
    private(set) var ids: [UInt32] = []
    /// Where each id's hashes start in `hashes`.
    private(set) var starts: [Int] = []
    /// How many hashes each id has; -1 marks a deletion.
    private(set) var counts: [Int] = []
    private(set) var hashes: [UInt32] = []

    var isEmpty: Bool { ids.isEmpty }
    var hashCount: Int { hashes.count }

    func isDeletion(_ position: Int) -> Bool { counts[position] < 0 }

    /// The hashes of `ids[position]` (empty for a deletion).
    func hashes(at position: Int) -> ArraySlice<UInt32> {
        counts[position] < 0 ? [] : hashes[starts[position]..<(starts[position] + counts[position])]
    }

    /// Calls `body` with the hashes, the starts and the counts as buffers.
    func withHashes<R>(
        _ body: (UnsafeBufferPointer<UInt32>, UnsafeBufferPointer<Int>, UnsafeBufferPointer<Int>) -> R
    ) -> R {
        hashes.withUnsafeBufferPointer { hashes in
            starts.withUnsafeBufferPointer { starts in
                counts.withUnsafeBufferPointer { counts in body(hashes, starts, counts) }
            }
        }
    }

    /// The changes of a request: its inserts and deletes, the last per id winning.
    init(_ request: FlatUpdateRequest) {
        // Sort (id, position) pairs: a stable way to find each id's last change without hashing.
        var order: [UInt64] = []
        order.reserveCapacity(request.items.count)
        for (position, item) in request.items.enumerated() {
            switch item {
            case .insert(let id, _), .delete(let id): order.append(UInt64(id) << 32 | UInt64(position))
            case .setMetadata: break
            }
        }
        order.sort()
        var kept: [Int] = []
        kept.reserveCapacity(order.count)
        for (i, key) in order.enumerated() where i + 1 == order.count || order[i + 1] >> 32 != key >> 32 {
            kept.append(Int(truncatingIfNeeded: key & 0xffff_ffff))
        }
        // A request that inserts each id once (the usual bulk write) keeps its hash array as it is.
        let keepsEveryInsert = kept.count == order.count
        ids.reserveCapacity(kept.count)
        starts.reserveCapacity(kept.count)
        counts.reserveCapacity(kept.count)
        if keepsEveryInsert { hashes = request.hashes }
        for position in kept {
            switch request.items[position] {
            case .insert(let id, let range):
                ids.append(id)
                if keepsEveryInsert {
                    starts.append(range.lowerBound)
                } else {
                    starts.append(hashes.count)
                    hashes.append(contentsOf: request.hashes[range])
                }
                counts.append(range.count)
            case .delete(let id):
                ids.append(id)
                starts.append(0)
                counts.append(-1)
            case .setMetadata:
                break
            }
        }
    }

    /// The changes given as the final state of each id (nil: deleted).
    init(_ changes: [UInt32: [UInt32]?]) {
        for id in changes.keys.sorted() {
            ids.append(id)
            if let list = changes[id]! {
                starts.append(hashes.count)
                counts.append(list.count)
                hashes.append(contentsOf: list)
            } else {
                starts.append(0)
                counts.append(-1)
            }
        }
    }

    /// As changes for the write-ahead log.
    var changes: [Change] {
        ids.indices.map { isDeletion($0) ? .delete(id: ids[$0]) : .insert(id: ids[$0], hashes: Array(hashes(at: $0))) }
    }
}
