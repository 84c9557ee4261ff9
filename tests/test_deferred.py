"""The background runner that takes plots and model logging off a trial's critical path."""

import threading

import pytest

from pipeline.deferred import Deferred


def test_jobs_run_one_at_a_time_off_the_calling_thread_and_exit_waits_for_the_last():
    ran, threads, gate = [], set(), threading.Event()

    def job(n):
        def run():
            gate.wait(5)
            threads.add(threading.current_thread().name)
            ran.append(n)
        return run

    with Deferred() as deferred:
        deferred.submit(job(1))
        assert ran == []  # submit returned while the job was still blocked
        gate.set()
        deferred.submit(job(2))  # waits for job 1 first
        assert ran == [1]
    assert ran == [1, 2]
    assert threads and threading.current_thread().name not in threads


def test_a_failed_job_is_raised_by_the_next_check_and_only_once():
    deferred = Deferred()
    deferred.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        deferred.submit(lambda: None)
    deferred.check()
    deferred.wait()  # job 2 ran fine; nothing left to raise


def test_leaving_with_an_error_keeps_that_error_and_still_finishes_the_job():
    finished = []
    with pytest.raises(KeyError):
        with Deferred() as deferred:
            deferred.submit(lambda: finished.append(1 / 0))
            raise KeyError("the trial's own failure")
    assert finished == []  # the job ran (and failed), but the KeyError is what surfaced
