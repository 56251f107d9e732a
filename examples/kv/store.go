package kv

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/distkit/distkit/merkle"
	"github.com/distkit/distkit/vclock"
)

// ErrHintsFull is returned by [HintStore.Add] when the store already holds
// [StoreConfig.MaxHints] hints: the write is refused rather than buffered
// without bound, and the coordinator counts the replica as failed.
var ErrHintsFull = errors.New("kv: hint store full")

// ErrBadKey is returned for an empty key, a key longer than [MaxKeyLen],
// or an empty or NUL-containing node ID as a hint target.
var ErrBadKey = errors.New("kv: bad key")

// ErrTooManySiblings is returned for a coordinated write that would leave
// its key with more than [StoreConfig.MaxSiblings] siblings: nothing was
// written. The client reads the key and writes the value it resolves
// the siblings to, with the read's context. The HTTP API answers 409.
var ErrTooManySiblings = errors.New("kv: too many siblings")

// ErrObjectTooLarge is returned for a coordinated write that would make
// its key's values, siblings included, longer than
// [StoreConfig.MaxObjectLen]: nothing was written. The HTTP API answers
// 413.
var ErrObjectTooLarge = errors.New("kv: object too large")

// MaxKeyLen is the longest key the store accepts, in bytes.
const MaxKeyLen = 1024

// Default store settings.
const (
	DefaultMaxHints      = 100_000
	DefaultMaxBatchDelay = 200 * time.Microsecond
	// DefaultMaxSiblings is Riak's max_siblings.
	DefaultMaxSiblings = 100
	// DefaultMaxObjectLen keeps an object, clocks included, well inside
	// one replica RPC ([MaxRPCLen]).
	DefaultMaxObjectLen = 16 << 20
)

// initialMmapSize is the address space a store's file is first mapped
// with, as etcd's backend does: a file that grows within it is never
// remapped, and a remap waits for every read transaction to end while
// it holds up the writes. It reserves addresses, not memory.
const initialMmapSize = 1 << 30

// DefaultTree is the geometry of the store's anti-entropy trees unless
// configured: 256 branches of 64 segments, 133 KiB per tree, one or two
// keys per dirty segment up to about 16,000 keys per group.
var DefaultTree = merkle.Config{Branches: 256, SegmentsPerBranch: 64}

// StoreConfig configures [Open]. The zero StoreConfig means the defaults.
// It is a plain value.
type StoreConfig struct {
	// Tree is the geometry of every anti-entropy tree; zero: DefaultTree.
	// Replicas that exchange trees must use the same geometry.
	Tree merkle.Config
	// MaxHints bounds the hints held for other nodes; 0: DefaultMaxHints.
	MaxHints int
	// Group assigns each key to the anti-entropy tree it is kept in, for
	// example its replica set, so that two replicas compare exactly the
	// keys both should hold. nil: one group "" for every key. It must be a
	// pure function; change it with [Store.Regroup].
	Group func(key []byte) string
	// MaxBatchDelay is how long the first write of a batch waits for
	// others to share its fsync. 0: writes of objects wait for no timer,
	// each commit taking the writes that arrived while the one before
	// ran (group commit), and writes of idempotency records (bbolt's
	// Batch) wait DefaultMaxBatchDelay. A simulation sets it to make the
	// batches independent of the scheduler: the writes issued at one
	// instant of its clock then commit together.
	MaxBatchDelay time.Duration
	// NoSync skips the fsync of each commit, checkpoint and new log
	// segment, like etcd's --unsafe-no-fsync: a write then survives a
	// crash of the process but not of the machine. For tests only.
	NoSync bool
	// MaxSiblings bounds the siblings of a key that a coordinated write
	// ([Store.Update]) may leave: a write that would leave more, and more
	// than the key had, is refused with [ErrTooManySiblings] (a write
	// that resolves siblings always passes). Merges from other replicas
	// are never refused, so concurrent coordinators may together pass
	// the bound; the next write through either then has to resolve.
	// 0: DefaultMaxSiblings.
	MaxSiblings int
	// MaxObjectLen bounds the bytes of a key's values and idempotency
	// keys, siblings included, in the same way, with [ErrObjectTooLarge].
	// 0: DefaultMaxObjectLen.
	MaxObjectLen int
	// Epoch names the store in the actor IDs of the writes it
	// coordinates; it is used only when the file is created, and kept in
	// it. Empty: 8 random hex digits. It may hold ASCII letters, digits
	// and '_', at most 64. A node whose disk was lost comes back with a
	// new store, hence a new epoch, so that its new writes never reuse the
	// dots of its lost ones; and a store that was not closed cleanly
	// opens under a new incarnation of its epoch ([Store.Epoch]), so that
	// no dot it handed out before it was on disk is given twice.
	Epoch string
	// OnCommit, if set, is called once per commit of a batch of writes,
	// with the time spent appending the batch to the write-ahead log and
	// syncing it; it must not block.
	OnCommit func(write time.Duration)
	// CheckpointBytes is the size the write-ahead log grows to before a
	// checkpoint applies its writes to the bbolt file in the background
	// and starts it afresh; it also bounds the memory the writes since the
	// last checkpoint take (about twice their encoded size), as writes
	// wait for a checkpoint when the log reaches four times it.
	// 0: DefaultCheckpointBytes.
	CheckpointBytes int
}

// Store is one replica's durable state: every key's [Object] with the
// tombstone bookkeeping of reaping (when each dead object last changed,
// the reap floor) and the store's epoch, in a bbolt file fronted by a
// write-ahead log, as LevelDB's memtable and log front its tables. A
// write is appended to the log, with every write of its batch ([groupCommit]),
// and synced before it returns, so an acknowledged write survives a
// crash of the process or the machine; the writes since the last
// checkpoint are also kept decoded in memory, where reads and the next
// writes of their keys find them without a bbolt transaction or a
// decoding. When the log has grown to [StoreConfig.CheckpointBytes], a
// checkpoint applies it to the bbolt file in one transaction, in the
// background, and deletes it; [Open] replays what a crash left. A read
// sees only synced writes. Scans (anti-entropy pages, handover,
// tombstones, Regroup) checkpoint first and read the file.
//
// Two owners sit beside the objects: the anti-entropy index
// ([Store.Trees]), fed by a hook after every commit, and the hints held
// for other nodes ([Store.Hints]), in a file and under a lock of their
// own.
//
// A Store is safe for concurrent use. Its zero value is not usable: call
// [Open].
type Store struct {
	db      *bolt.DB
	path    string
	commits groupCommit // every write of an object
	cfg     StoreConfig
	tree    *merkle.Tree // geometry only: Segment of a key

	// writing is held shared by a write from its batch to its commit
	// hook, and exclusively by Regroup's scan, so that every committed
	// write is in the index exactly once.
	writing sync.RWMutex
	origin  string // the epoch the file was created with, in every log segment's header
	epoch   string // this incarnation's: origin, then origin-N after the Nth unclean start
	index   *TreeIndex
	hints   *HintStore

	// logMu is held by a commit from its batch to its publication in the
	// memory table, and by a rotation of the log: batches are logged and
	// made visible in order, and a segment's records are exactly the
	// writes of the table a checkpoint takes.
	logMu         sync.Mutex
	log           *os.File   // the current segment
	syncer        *logSyncer // syncs it; safe for concurrent use
	logSeq        uint64     // its number
	logStart      int64      // the offset of its first frame
	logSize       int64      // the bytes of frames in it
	floor         uint64     // the reap floor, as committed
	failed        error      // set once: every later write fails with it
	closed        bool
	checkpointing bool // a background checkpoint is counted in bg
	// dirty holds the entries of active written since the last flush or
	// checkpoint ([Store.flush]).
	dirty map[string]*memEntry
	batch batch // the commit's, reused

	ckptMu sync.Mutex     // serialises checkpoints
	bg     sync.WaitGroup // background checkpoints

	// mu guards the memory table: the entries of the writes since the
	// last checkpoint (active) and those a running checkpoint applies
	// (imm), by data key.
	mu          sync.RWMutex
	active, imm map[string]*memEntry
}

var (
	bucketData  = []byte("data")    // [segment uint32 BE][key] → encoded Object
	bucketMeta  = []byte("meta")    // keyEpoch, keyUnclean, keyClean, keyFloor
	bucketTombs = []byte("tombs")   // [segment uint32 BE][key] → when its object, all tombstones, last changed, Unix ns BE
	keyEpoch    = []byte("epoch")   // the epoch the file was created with
	keyUnclean  = []byte("unclean") // uint64 BE: the opens that found no keyClean, the first excepted
	keyClean    = []byte("clean")   // present from a clean Close to the next Open
	keyFloor    = []byte("floor")   // uint64 BE: no reaped object had a larger counter
)

// maxEpochLen bounds [StoreConfig.Epoch].
const maxEpochLen = 64

// checkEpoch returns an error for an epoch [StoreConfig.Epoch] does not
// allow: one that could end another epoch's actor IDs, or run into the
// incarnation [Store.Epoch] appends.
func checkEpoch(e string) error {
	if len(e) > maxEpochLen {
		return fmt.Errorf("kv: epoch of %d bytes, at most %d may be", len(e), maxEpochLen)
	}
	for _, c := range []byte(e) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_') {
			return fmt.Errorf("kv: epoch %q: only ASCII letters, digits and '_' may be in it", e)
		}
	}
	return nil
}

// Open opens (creating if needed) the store in the bbolt file at path,
// with its hints in path+".hints" and its write-ahead log in
// path+".log.*", replays the log a crash left into the file, and
// rebuilds its trees from the data. It returns an error wrapping
// merkle.ErrConfig for an invalid tree geometry, an error for a log that
// is corrupt other than at the end a crash may tear (or that belongs to
// another store: its epoch differs), and any error of bbolt (such as a
// file locked by another process, after a one-second wait).
func Open(path string, cfg StoreConfig) (*Store, error) {
	if cfg.Tree == (merkle.Config{}) {
		cfg.Tree = DefaultTree
	}
	if err := cfg.Tree.Validate(); err != nil {
		return nil, err
	}
	if err := checkEpoch(cfg.Epoch); err != nil {
		return nil, err
	}
	if cfg.MaxHints <= 0 {
		cfg.MaxHints = DefaultMaxHints
	}
	commitDelay := max(cfg.MaxBatchDelay, 0)
	if cfg.MaxBatchDelay <= 0 {
		cfg.MaxBatchDelay = DefaultMaxBatchDelay
	}
	if cfg.MaxSiblings <= 0 {
		cfg.MaxSiblings = DefaultMaxSiblings
	}
	if cfg.MaxObjectLen <= 0 {
		cfg.MaxObjectLen = DefaultMaxObjectLen
	}
	if cfg.CheckpointBytes <= 0 {
		cfg.CheckpointBytes = DefaultCheckpointBytes
	}
	// As etcd does, the freelist is not written at each commit (a smaller
	// commit) but rebuilt by a scan when the file is opened, and the
	// file is mapped with room to grow (see initialMmapSize).
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, InitialMmapSize: initialMmapSize})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("kv: open %s: locked by another process (a node running on the same data directory?): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("kv: open %s: %w", path, err)
	}
	db.MaxBatchDelay = cfg.MaxBatchDelay
	db.NoSync = cfg.NoSync
	s := &Store{db: db, path: path, cfg: cfg, tree: merkle.New(cfg.Tree), index: &TreeIndex{cfg: cfg.Tree}, active: map[string]*memEntry{}, dirty: map[string]*memEntry{}, syncer: newLogSyncer()}
	s.commits = groupCommit{run: s.commitBatch, delay: commitDelay}
	s.batch = batch{s: s, staged: map[string]*memEntry{}}
	if s.hints, err = openHints(path+".hints", cfg); err != nil {
		return nil, errors.Join(fmt.Errorf("kv: open %s.hints: %w", path, err), db.Close())
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := s.hints.adopt(tx); err != nil {
			return err
		}
		for _, b := range [][]byte{bucketData, bucketMeta, bucketTombs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return s.incarnate(tx.Bucket(bucketMeta))
	})
	if err == nil {
		err = s.recover()
	}
	if err == nil {
		err = s.Regroup(cfg.Group)
	}
	if err != nil {
		if s.log != nil {
			err = errors.Join(err, s.log.Close())
		}
		return nil, errors.Join(fmt.Errorf("kv: open %s: %w", path, err), s.hints.close(), db.Close(), s.syncer.close())
	}
	return s, nil
}

// incarnate sets the store's epoch from meta, the bucket of a file being
// opened, before any write: a new file's is the configured one (or a
// random one); a file last closed cleanly keeps its epoch; any other
// (its process crashed, or its disk failed) takes the next incarnation,
// "origin-N" after the Nth such open. A coordinator sends a write to
// other replicas while its own copy is being synced ([Store.updateOnce]),
// so a crash can lose a dot of this store that another replica holds;
// the next incarnation's actor has never numbered a dot, and reuses none.
// The clean mark is consumed here, in the transaction that must commit
// before the store takes a write.
func (s *Store) incarnate(meta *bolt.Bucket) error {
	if e := meta.Get(keyEpoch); e != nil {
		s.origin = string(e)
		n := getUint64(meta, keyUnclean)
		if meta.Get(keyClean) != nil {
			if err := meta.Delete(keyClean); err != nil {
				return err
			}
		} else {
			n++
			if err := meta.Put(keyUnclean, binary.BigEndian.AppendUint64(nil, n)); err != nil {
				return err
			}
		}
		s.epoch = s.origin
		if n > 0 {
			s.epoch = fmt.Sprintf("%s-%d", s.origin, n)
		}
		return nil
	}
	s.origin = cmp.Or(s.cfg.Epoch, fmt.Sprintf("%08x", rand.Uint32()))
	s.epoch = s.origin
	return meta.Put(keyEpoch, []byte(s.origin))
}

// Epoch returns the store's current incarnation: [StoreConfig.Epoch] as
// the file was created with it, followed by "-N" once the store has been
// opened N times after it was not closed cleanly. A node's actor ID is
// its ID and this epoch.
func (s *Store) Epoch() string { return s.epoch }

// Close waits for a background checkpoint, checkpoints the log's writes
// into the bbolt file, marks the file closed cleanly, deletes the log and
// closes the files. A store whose log failed before ([ErrStorage]) keeps
// its log for the next Open to replay, which opens it under a new
// incarnation ([Store.Epoch]), and Close does not report that failure
// again. Writes that
// race with Close may fail; calls after Close fail with bbolt's
// ErrDatabaseNotOpen. A second Close does nothing.
func (s *Store) Close() error {
	s.logMu.Lock()
	if s.closed {
		s.logMu.Unlock()
		return nil
	}
	s.closed = true
	failed := s.failed != nil
	s.logMu.Unlock()
	s.bg.Wait()
	var err error
	if !failed {
		err = s.checkpoint()
	}
	if err == nil && !failed {
		// Every write the store took is in the file: the next Open keeps
		// the epoch (see [Store.incarnate]).
		err = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyClean, []byte{1}) })
	}
	s.logMu.Lock()
	if closeErr := s.log.Close(); !failed {
		err = errors.Join(err, closeErr)
	}
	if err == nil && s.failed == nil {
		err = os.Remove(segmentPath(s.path, s.logSeq)) // empty
	}
	err = errors.Join(err, s.syncer.close())
	s.logMu.Unlock()
	s.mu.Lock()
	s.active, s.imm = nil, nil
	s.mu.Unlock()
	return errors.Join(err, s.hints.close(), s.db.Close())
}

// Trees returns the store's anti-entropy index.
func (s *Store) Trees() *TreeIndex { return s.index }

// Hints returns the hints the store holds for other nodes.
func (s *Store) Hints() *HintStore { return s.hints }

// Path returns the bbolt file's path.
func (s *Store) Path() string { return s.db.Path() }

// Regroup replaces the grouping of keys into anti-entropy trees (nil: one
// group) and rebuilds every tree with one scan of the data. A node calls
// it when the ring changes and keys change replica sets.
func (s *Store) Regroup(group func(key []byte) string) error { return s.regroup(group, nil) }

// regroup is Regroup that calls publish, when not nil, once the new trees
// are in place and before any write commits again: a node publishes the
// placement whose grouping it is there, so that no write lands in a tree
// of the other grouping and no request sees the one without the other.
func (s *Store) regroup(group func(key []byte) string, publish func()) error {
	s.writing.Lock()
	defer s.writing.Unlock()
	if err := s.flush(); err != nil {
		return err
	}
	err := s.index.rebuild(group, func(f func(key []byte, h uint64)) error {
		return s.db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketData).ForEach(func(k, v []byte) error {
				f(k[4:], hashBytes(v))
				return nil
			})
		})
	})
	if err != nil {
		return fmt.Errorf("kv: rebuild trees: %w", err)
	}
	if publish != nil {
		publish()
	}
	return nil
}

func checkKey(key []byte) error {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes, want 1 to %d", ErrBadKey, len(key), MaxKeyLen)
	}
	return nil
}

// dataKey is key's name in the data bucket: its segment first, so that the
// keys of a dirty segment are one range scan.
func (s *Store) dataKey(key []byte) []byte {
	return s.appendDataKey(make([]byte, 0, 4+len(key)), key)
}

// appendDataKey appends key's data key to dst.
func (s *Store) appendDataKey(dst, key []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(s.tree.Segment(key)))
	return append(dst, key...)
}

// Get returns key's object, and false if the key has never been stored
// here. It returns [ErrBadKey] for an invalid key and [ErrMalformed] for
// corrupt data.
func (s *Store) Get(key []byte) (Object, bool, error) {
	o, found, err := s.get(key)
	return o.Clone(), found, err
}

// get is Get that returns the object as stored: shared with the store,
// to be read and not changed.
func (s *Store) get(key []byte) (Object, bool, error) {
	if err := checkKey(key); err != nil {
		return Object{}, false, err
	}
	var buf [64]byte // most keys' data keys fit: no allocation
	e, err := s.lookup(s.appendDataKey(buf[:0], key))
	if err != nil || e == nil || e.enc == nil {
		return Object{}, false, err
	}
	return e.obj, true, nil
}

// Update is a coordinated write on this replica: it applies the client's
// write v with the context ctx it read (the zero VClock for a blind write)
// as actor, with [vclock.DVVSet.Update], stores the result durably and
// returns it, to be replicated to the other replicas with [Store.Merge].
// Only a replica that holds the key's data may coordinate with its own
// actor ID, "<node ID>.<epoch>" ([Store.Epoch]): the new dot is unique
// because this store has seen every dot of that actor for the key, or,
// when it holds no value of that actor, because the new dot is numbered
// above the store's reap floor (see [Store.Reap]).
//
// ctx is trusted only as far as this copy of the key vouches for it: an entry naming a writer the copy has not seen is dropped,
// and a counter above the copy's is cut down to it. A forged context
// therefore supersedes nothing the copy does not hold and never enters
// the key's history; an honest one read from replicas ahead of this one
// leaves the values this copy has not seen yet as siblings, for the next
// read to return and the client to resolve. A write whose dot would pass
// [vclock.MaxCounter] is refused with an error wrapping
// [vclock.ErrExhausted], one that would pass [StoreConfig.MaxSiblings] or
// [StoreConfig.MaxObjectLen] with [ErrTooManySiblings] or
// [ErrObjectTooLarge], and nothing is written.
func (s *Store) Update(key []byte, ctx vclock.VClock, actor string, v Version) (Object, error) {
	if err := checkKey(key); err != nil {
		return Object{}, err
	}
	return owned(s.write(key, func(b *batch, o *Object) error { return s.update(b, o, ctx, actor, v) }, Object{}, nil))
}

// seen returns the part of ctx that o has seen: each of ctx's counters
// cut down to o's for the same writer, and the writers o has never seen
// left out. A context that o descends from is returned whole.
func seen(o Object, ctx vclock.VClock) vclock.VClock {
	have := o.Context()
	var out vclock.VClock
	for id, c := range ctx.All() {
		out.Add(vclock.Dot{ID: id, Counter: min(c, have.Get(id))})
	}
	return out
}

// update applies a coordinated write to o within b, the batch of its
// key's write, with the part of ctx that o has seen. It returns the error
// of a write [Store.Update] refuses; nothing is then written.
func (s *Store) update(b *batch, o *Object, ctx vclock.VClock, actor string, v Version) error {
	ctx = seen(*o, ctx)
	if !holdsValueOf(*o, actor) {
		// actor's dots of the key are all superseded here, or were reaped:
		// each at most the floor and covered by the reaped tombstone. The
		// new write supersedes them all, so its dot is new and a straggler
		// cannot come back as a sibling.
		if b.floor > ctx.Get(actor) {
			ctx.Add(vclock.Dot{ID: actor, Counter: b.floor})
		}
	}
	maxSiblings, maxLen := s.cfg.MaxSiblings, s.cfg.MaxObjectLen
	siblings, size := o.Len(), valuesLen(*o)
	if err := o.TryUpdate(ctx, actor, v); err != nil {
		return err
	}
	if n := o.Len(); n > maxSiblings && n > siblings {
		return fmt.Errorf("%w: the write would leave %d siblings, at most %d may be: read the key and write the value you resolve them to, with the read's context", ErrTooManySiblings, n, maxSiblings)
	}
	if n := valuesLen(*o); n > maxLen && n > size {
		return fmt.Errorf("%w: the write would make the values, siblings included, %d bytes, at most %d may be: read the key and resolve its siblings", ErrObjectTooLarge, n, maxLen)
	}
	return nil
}

// valuesLen returns the bytes of o's values and idempotency keys,
// siblings included: what [StoreConfig.MaxObjectLen] bounds.
func valuesLen(o Object) int {
	n := 0
	eachValue(o, func(v Version) bool {
		n += len(v.Value) + len(v.IdempotencyKey)
		return true
	})
	return n
}

// holdsValueOf reports whether o has a value written by actor.
func holdsValueOf(o Object, actor string) bool {
	for d := range o.Dotted() {
		if d.ID == actor {
			return true
		}
	}
	return false
}

// Merge merges o into key's object with [vclock.DVVSet.Sync] (replication,
// read repair, anti-entropy, handoff) and returns the merged object. It
// writes only if the object changed.
func (s *Store) Merge(key []byte, o Object) (Object, error) {
	if err := checkKey(key); err != nil {
		return Object{}, err
	}
	return owned(s.write(key, func(_ *batch, cur *Object) error { cur.Sync(o); return nil }, Object{}, nil))
}

// mergeOwned is Merge of an object the caller hands over, such as one it
// decoded from a request: o is changed and kept by the store, not
// copied. It returns the object as stored: shared with the store, to be
// read and not changed.
func (s *Store) mergeOwned(key []byte, o Object) (Object, error) {
	if err := checkKey(key); err != nil {
		return Object{}, err
	}
	return s.write(key, nil, o, nil)
}

// owned returns a copy of o, which the store may share, with err.
func owned(o Object, err error) (Object, error) { return o.Clone(), err }

// write applies f to key's object, or merges in into it when f is nil
// (see [batch.apply]), in a batch shared with concurrent writes (one log
// append and fsync for all, [groupCommit]), and feeds the change to the
// index once the batch committed. It returns the object as stored:
// shared with the store, to be read and not changed.
//
// staged, when not nil and the write changes the object, is called with
// the object as stored once the batch computed it and before the batch
// is durable, on the goroutine committing the batch with the store's
// log held: it must not block or call into the store. The write may
// still fail after it (a failed log: [ErrStorage]).
func (s *Store) write(key []byte, f func(b *batch, o *Object) error, in Object, staged func(Object)) (Object, error) {
	c := s.commits.call()
	c.key, c.dk, c.f, c.in, c.staged = key, s.dataKey(key), f, in, staged
	s.writing.RLock()
	defer s.writing.RUnlock()
	err := s.commits.do(c)
	out, ch, changed := c.out, c.change, c.changed
	s.commits.release(c)
	if err == nil && changed {
		s.index.committed(ch)
	}
	return out, err
}

// apply applies f to the object of key, whose data key is dk, within the
// batch b, or, when f is nil, merges in into it (changing in, which the
// write hands over), and stages the result with its tombstone time if it
// changed.
// It returns the object (as staged when it changed: shared, read-only)
// and, when it changed, the change for the index, which the caller feeds
// to it once b committed. A failure stages nothing.
func (b *batch) apply(dk, key []byte, f func(b *batch, o *Object) error, in Object) (Object, change, bool, error) {
	cur, err := b.lookup(dk)
	if err != nil {
		return Object{}, change{}, false, err
	}
	var (
		o   Object
		old []byte
	)
	if cur != nil && cur.enc != nil {
		old = cur.enc
	}
	if f == nil {
		// Sync is commutative: in, which the write owns, takes the stored
		// object in, rather than a copy of the stored object taking in.
		o = in
		if old != nil {
			o.Sync(cur.obj)
		}
	} else {
		if old != nil {
			o = cur.obj.Clone()
		}
		if err := f(b, &o); err != nil {
			return o, change{}, false, err
		}
	}
	enc, err := EncodeObject(o)
	if err != nil || bytes.Equal(enc, old) {
		return o, change{}, false, err
	}
	e := &memEntry{obj: o, enc: enc}
	// A key has a tombstone time exactly while its object is dead, and
	// each change of a dead object restarts it: the grace period of a
	// reap runs from the last change, as a dead object that merged a
	// newer tombstone may have had a live value elsewhere moments before,
	// whose messages are still in flight.
	if Dead(o) {
		e.tomb = time.Now().UnixNano()
	}
	b.put(dk, e)
	return o, change{key: key, old: hashBytes(old), new: hashBytes(enc), existed: old != nil, exists: true}, true, nil
}

// Entry is one key and its object. It is a plain value; the zero Entry
// has no key.
type Entry struct {
	Key    []byte
	Object Object
}
