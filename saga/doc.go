// Package saga runs sagas (Garcia-Molina and Salem, 1987): sequences of
// local transactions, each with a compensation, that either all take
// effect or are undone in reverse order. An [Orchestrator] drives them,
// writes every move to a durable [Log] before making the next one, and
// after a crash [Orchestrator.Recover] finishes every saga the crash left
// open, in this process or another one reading the same log.
//
// The package follows dtm's saga mode and Temporal's saga pattern:
// retries with exponential backoff and full jitter as in AWS Step
// Functions (see [RetryPolicy]), [Permanent] errors that skip them,
// compensations retried up to a limit and then reported as [Stuck] (a
// log line at Error level and a *[StuckError], never a silent drop), a
// small key-value bag persisted with each step ([Exec.Put]), and, for the
// services a saga calls, dtm's sub-transaction [Barrier].
//
// # Usage
//
//	log, err := saga.OpenFileLog("/var/lib/app/sagas.log")   // or &saga.MemLog{}
//	o := saga.New(log, saga.Config{Logger: slog.Default(), MaxConcurrent: 64})
//	err = o.Register(saga.Definition{Name: "order", Steps: []saga.Step{
//		{Name: "reserve", Do: reserve, Undo: release, Timeout: 2 * time.Second},
//		{Name: "charge", Do: charge, Undo: refund, Retry: saga.RetryPolicy{MaxAttempts: 5}},
//		{Name: "ship", Do: ship},
//	}})
//
// A group runs its members concurrently, like a Parallel state of AWS
// Step Functions or dtm's concurrent saga:
//
//	{Name: "book", Parallel: []saga.Step{
//		{Name: "flight", Do: bookFlight, Undo: cancelFlight},
//		{Name: "hotel", Do: bookHotel, Undo: cancelHotel},
//	}},
//	err = o.Recover(ctx)                      // at start: finish what a crash left open
//	out, err := o.Run(ctx, "order", orderID, input)
//	// elsewhere, to stop it and undo what it did: o.Cancel(ctx, orderID)
//	// out is saga.Committed (err nil), saga.Compensated (err a *saga.StepError)
//	// or saga.Stuck (err a *saga.StuckError)
//	...
//	o.Close(shutdownCtx)
//	log.Close()
//
// Inside a step, x.IdempotencyKey() names the call for the service it goes
// to, x.Get and x.Put read and write the bag:
//
//	func charge(ctx context.Context, x *saga.Exec) error {
//		id, err := payments.Charge(ctx, x.IdempotencyKey(), amount(x.Input))
//		if errors.Is(err, payments.ErrDeclined) {
//			return saga.Permanent(err) // no retry; compensate
//		}
//		x.Put("payment", []byte(id))  // refund reads it, even after a crash
//		return err
//	}
//
// A participant, the service a step calls, guards its handlers with a
// [Barrier] keyed by the key the step sent:
//
//	b := saga.Barrier{Store: store}            // any idempotency.Store
//	err := b.Action(ctx, key, reserveStock)    // POST /reserve
//	err := b.Compensate(ctx, key, releaseStock) // POST /release
//
// # Guarantees
//
// For one saga ID, with one orchestrator writing the log at a time:
//
//   - Write-ahead: every attempt, of Do and of Undo, is logged before it
//     starts, and its outcome (with its Puts) is logged, and fsync'd by
//     [FileLog], before the saga moves on. A Log error stops the saga
//     where it stands.
//   - Every saga that starts ends Committed, Compensated or Stuck, across
//     any number of crashes followed by Recover: the forward phase takes at
//     most Retry.Attempts() attempts per step, and the backward phase at
//     most UndoRetry's attempts per Undo (Step.UndoRetry, whose zero
//     fields come from Config.UndoRetry); an attempt interrupted by a
//     crash or a panic counts. So a Do that kills the process on every
//     try leads to Compensated, and an Undo that does to Stuck, after
//     their attempts.
//   - Committed: every step's Do succeeded, in order (the members of a
//     group in any order), and no Undo ran.
//   - Compensated: the forward phase gave up at some step; then Undo ran
//     to success for every earlier step, in reverse order, and for the
//     failed step itself unless its only attempt failed [Permanent] (a
//     retryable failure, a timeout or a crash leaves its effect
//     unknown). Undo may thus see a step whose Do never took effect. In a group, the members still running
//     when one gives up are stopped, and every member that may have
//     taken effect is undone, the members concurrently, before the
//     earlier steps. Each member's attempts are logged on their own, so
//     Recover resumes each member where it stood.
//   - Once a saga compensates, no Do of that saga runs again, and the
//     Undo of a step never runs after that Undo's success was logged.
//   - Do and Undo may run more than once: an attempt whose success was
//     not logged before a crash runs again, with the same
//     [Exec.IdempotencyKey]. Make them idempotent (a [Barrier] does, for a
//     participant).
//   - A saga ID runs once: Run with an ID already in the log returns its
//     recorded outcome and [ErrDuplicate].
//   - Cancel: once [Orchestrator.Cancel] returns nil, the saga starts
//     no new attempt of Do and ends Compensated (with [ErrCancelled]) or
//     Stuck, also if the process crashes right after: the cancellation
//     is in the log.
//   - Stuck sagas are terminal in the log, logged at Error level and
//     returned as *[StuckError]; they need an operator.
//
// For one key, a [Barrier] runs the action's body to success at most once
// while its records are retained (and only if no compensation came
// first), and the compensation's body to success at most once, whenever
// the action's body may have taken effect: after its success, and after
// a call of it whose outcome was never recorded (a crash, or a claim that
// lapsed). It records a null compensation only when no call of the action
// may have taken effect. Every call that has nothing left to do succeeds,
// except an action whose compensation came first, which gets
// [ErrHanging]. [Barrier] states the windows that remain when the store
// is apart from the participant's data; a barrier whose records commit in
// the participant's own database transaction (the stores module's
// PostgreSQL barrier) closes them.
//
// # Durability
//
// [FileLog] appends length-prefixed msgpack records with CRC-32C
// checksums and fsyncs before Append returns; concurrent appends share
// one write and one fsync (group commit). On open it truncates a torn
// tail — a damaged last frame with no intact frame after it — and
// refuses damage followed by intact frames with a *[CorruptError]. The
// file grows until [FileLog.Compact] rewrites it without the finished
// sagas (whose IDs the log then forgets). A FileLog holds an exclusive
// flock on its file while open: a second FileLog of the same file, in
// this process or another, fails to open with [ErrLocked].
package saga
