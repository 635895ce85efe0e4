"""The grading session every command shares: its options and the limits of each unit."""

from harness.grading.session import RunOptions, check_limits, training_limits


def test_check_limits_come_from_the_assignment_unless_the_options_set_them(assignment):
    s = assignment.sandbox
    default = check_limits(assignment, RunOptions())
    assert (default.timeout_s, default.memory_mb) == (s.check_timeout_s, s.memory_mb)
    set_ = check_limits(assignment, RunOptions(timeout_s=7.0, memory_mb=900))
    assert (set_.timeout_s, set_.memory_mb) == (7.0, 900)


def test_training_limits_scale_with_the_reference_between_floor_and_ceiling(assignment):
    s, options = assignment.sandbox, RunOptions(memory_mb=3000, threads=1)
    fast = training_limits(assignment, options, 5.0, student_loop=True)
    assert fast.timeout_s == s.train_floor_s and fast.stall_s == s.stall_s  # 10 x 5 s is under the floor
    assert (fast.memory_mb, fast.threads) == (3000, 1)
    mid = training_limits(assignment, options, 30.0, student_loop=True)
    assert mid.timeout_s == round(s.train_time_multiple * 30.0) and "reference's 30 s" in mid.why
    assert training_limits(assignment, options, 1e6, student_loop=True).timeout_s == s.train_timeout_s
    assert training_limits(assignment, options, None, student_loop=True).timeout_s == s.train_timeout_s
    explicit = training_limits(assignment, RunOptions(train_timeout_s=45.0), 30.0, student_loop=True)
    assert explicit.timeout_s == 45.0 and explicit.why == "set by --train-timeout"
    # the harness's own loop reports no steps, so no stall watch on it
    assert training_limits(assignment, options, 30.0, student_loop=False).stall_s == 0
