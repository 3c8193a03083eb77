// Package collections provides typed, replicated data structures that any
// node opens by name, as a writer or a reader: Map, Vec, Set, Cell, Once
// and PriorityQueue. Each collection is one group (package groups) whose
// state machine is the data structure, so it is replicated by Raft,
// consistent on every replica and caught up on a late join by a chunked
// snapshot from any member that holds one.
//
// # Model
//
// A collection is named by a string. Its group id derives from the name,
// the collection's kind, the Go types of its keys and values (package
// path and name), the consensus timings that are part of every group id
// and the WithRequireTicket validators (PROTOCOL.md §22). Programs that
// open the same name with the same types and options join the same group;
// anything else is another collection.
//
// Writers (NewMap, NewVec, ...) are raft voters or learners waiting to be
// promoted; readers (NewMapReader, ...) are learners that never vote, so
// adding readers never slows commits down. WithoutVote opens a writer
// that keeps the reader role: for short-lived clients (the reference
// node's map commands) that must not join the voter set.
//
// # Usual calls
//
//	var Users = collections.MapDef[string, User]("chat.users")
//
//	users, err := Users.Writer(n)         // n is a *node.Node (any Host)
//	defer users.Close()
//	err = users.When().Online(ctx)        // a leader is known
//	v, err := users.Insert(ctx, "alice", User{...})
//	u, ok := users.Get("alice")           // local, never blocks
//	for k, u := range users.All() { ... } // key order, equal on every replica
//
// # Reads and versions
//
// Reads are local: they see the latest state applied on this node, from
// an immutable snapshot (an O(1) copy-on-write clone), and never wait for
// the network. A lookup by a string, byte-string or integer key (Map Get
// and Contains, Set Contains, PriorityQueue Get) allocates nothing; other
// key types are encoded with the codec first. Every mutation returns the Version (log index) it
// committed at, once it is applied on this node, so a writer reads its
// own writes at once. Another replica holds them after When().Reaches(v).
// Sync is a linearizable read barrier: after it returns, local reads hold
// every mutation committed before the call.
//
// # Encoding and order
//
// Keys and values are encoded as canonical CBOR (RFC 8949 core
// deterministic encoding). Map and Set keep their items ordered by the
// encoding of the key, so iteration order is the same on every replica;
// compare-and-swap compares encodings. Values whose encoding does not
// decode back to the same bytes (a string that is not UTF-8) are refused
// on the caller's side with ErrEncoding.
//
// # A restored Map
//
// A Map replica that caught up from a snapshot (a late reader, a member
// that fell behind, a restart from its data dir) keeps the snapshot's
// bytes as its state's base, with 8 B of offsets per entry, and keeps the
// changes applied since in a tree over it: the restore builds no tree and
// leaves the GC nothing to mark. Content, order and snapshots are those of
// a replica that applied every command. The cost is on reads of the
// base: a lookup is a binary search of the snapshot's bytes (as fast as
// the tree's walk in BenchmarkMapGetRestored), a byte-string key or value
// is copied at each read (one allocation: the snapshot's bytes are the
// state this replica hashes and serves), and a key or value that is
// neither a string nor a byte string is decoded at each read
// (BenchmarkMapGetStruct: about 0.1–0.2 µs and two allocations more for a
// small struct); entries written since are held decoded. Once the
// changes since the restore outnumber half the base's entries, the
// replica folds the base into its tree (once, O(n), on the command that
// crosses the line), so the snapshot's bytes do not outlive most of their
// entries.
//
// # Caller's duties
//
//   - Close every handle. Opening a name already open on the node with the
//     same types returns another handle to the same replica: a reader
//     opened where a writer of the name is open shares the writer's
//     replica (which keeps its role until its last handle closes), as in
//     mosaik. A writer cannot be opened while only readers of the name
//     are (the group runs in one role per node): close them first.
//   - A *MutationError hands the argument back. When MayApply(err) is true
//     the mutation may still commit; a retry is then at-least-once.
//   - Treat what a read returns as read-only: slices, maps and pointers in
//     values (a []byte value, a struct holding a slice) may be shared with
//     the replica's state and with other readers; copy before changing.
//     (A restored Map's []byte keys and values are copies.)
//   - Every replica of a collection must use the same types, the same
//     consensus timings (groups.Params) and the same ticket validators.
//     The group ID names a type by package path and name only: a struct
//     whose fields differ between binaries (a rolling upgrade that adds a
//     field, or two function-local types of one name) joins the same
//     group, and a command one binary finds valid the other rejects, so
//     the replicas diverge. Give a changed type a new name (or the
//     collection a new name).
//   - Writers that start at once, each alone, may form two clusters of
//     one collection; when they meet, the cluster with the shorter log
//     (lower term first) is discarded (package groups: the merge). Its
//     replicas then read the empty state at Version 0 until the winner's
//     state arrives, and lose what only their cluster had committed: a
//     Once or a compare-and-swap may so appear to change its mind. Start
//     one writer first, or wait on When().Online before writing, where
//     that matters.
//
// # Locks
//
// A replica has two mutexes, both leaves: the one guarding its change
// notification and the one of its ring of recent outcomes. Neither is held
// while another lock is taken, a callback runs or a goroutine is waited
// for; reads of the state take no lock (an atomic snapshot).
//
// # Where this differs from mosaik
//
// Vec.Insert past the end is refused on the caller's side (mosaik panics
// the group on every node); compare-and-swap reports whether it applied;
// a command that is invalid when applied (only a hand-crafted one can be)
// is a no-op on every replica and counted (Rejected); a minority never
// commits (see package groups); Sync gives linearizable reads.
package collections
