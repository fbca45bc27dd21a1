"""The local job pool: results by key, more jobs submitted while others run, the first error stops the rest."""

import operator
import os

import pytest

from unlearnkit.workflows.jobs import JobPool, check_jobs, usable_cores


@pytest.mark.parametrize("jobs", [1, 2])
def test_results_come_back_by_key_and_jobs_can_be_added_while_others_run(jobs):
    with JobPool(jobs) as pool:
        for i in range(3):
            pool.submit(("mul", i), operator.mul, i, 10)
        got = {}
        for key, result in pool.completed():
            got[key] = result
            if key == ("mul", 2):
                pool.submit(("add", 2), operator.add, result, 1)  # depends on a finished job
    assert got == {("mul", 0): 0, ("mul", 1): 10, ("mul", 2): 20, ("add", 2): 21}


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failing_job_raises_its_error(jobs):
    with pytest.raises(ZeroDivisionError):
        with JobPool(jobs) as pool:
            pool.submit("ok", operator.add, 1, 1)
            pool.submit("bad", operator.truediv, 1, 0)
            for _ in pool.completed():
                pass


def test_default_is_one_job_per_usable_core_at_the_threads_asked():
    assert check_jobs(None, 1) == usable_cores()
    assert check_jobs(None, usable_cores() + 1) == 1
    assert check_jobs(3, 1) == 3



def test_a_worker_runs_every_thread_pool_at_the_threads_asked_and_shows_no_bars():
    """Also the BLAS pool of a numpy and the bars of a tqdm loaded before the worker started (as the command
    line's main module loads them in every spawned worker)."""
    import json
    import subprocess
    import sys

    code = ("import numpy, json, torch, tqdm\n"
            "from threadpoolctl import threadpool_info\n"
            "from unlearnkit.progress import progress_bar\n"
            "from unlearnkit.workflows.jobs import _start_worker\n"
            "shown = not progress_bar(total=1, desc='before').disable\n"
            "_start_worker(1)\n"
            "print(json.dumps({'bars': [shown, not progress_bar(total=1, desc='after').disable],"
            " 'torch': torch.get_num_threads(),"
            " **{i['internal_api']: i['num_threads'] for i in threadpool_info()}}))")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    pools = json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                      check=True).stdout.splitlines()[-1])
    assert pools.pop("bars") == [True, False]
    assert {"openblas", "mkl"} & pools.keys(), pools  # numpy's BLAS is among them
    assert set(pools.values()) == {1}, pools
