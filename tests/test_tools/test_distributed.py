"""torchrun (tools/dist_train.sh, tools/dist_test.sh) with 2 CPU processes over gloo.

- 2 ranks x batch 4 train like 1 rank x batch 8: same per-iteration loss (the rank
  mean) and the same parameters after 6 iterations, within stated tolerances. For
  the comparison the per-sample randomness is switched off (BN in eval mode instead
  of batch statistics, as SyncBN does not run on CPU; no dropout, no flip) and the
  data order is fixed (shuffle=False, seed 0): rank r gets indices r, r+2, ... so
  each step's union over the ranks is the 1-rank batch.
- one process group of world size 2, bitwise identical parameters on both ranks,
  only rank 0 writes checkpoints and logs;
- 2-process evaluation gives the COCO numbers of 1 process on the same checkpoint;
- the launch scripts resume only when the work dir has a checkpoint.
"""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from tests.conftest import DEMO_CONFIG, REPO_ROOT, run_tool, tiny_training_options
from tests.fixtures.dist_probe import (NO_VALIDATION, SMALL_IMAGES, load_checkpoint_file,
                                       probe_config, read_exit_records, read_probes)

# per-iteration loss of 2 ranks (mean) vs 1 rank, and parameters after 6 iterations
LOSS_RTOL = 1e-5
PARAM_ATOL = 1e-5

EQUIVALENCE_OPTIONS = [
    'model.backbone.norm_eval=True',  # per-sample BN (running stats), no batch coupling
    'model.encoder.layer_cfg.self_attn_cfg.dropout=0.0',
    'model.decoder.layer_cfg.cross_attn_cfg.dropout=0.0',
    'train_dataloader.dataset.pipeline.3.prob=0.0',  # RandomFlip off
    'train_dataloader.sampler.shuffle=False',
    'randomness.seed=0',
]


def _options(data_root, batch_size, max_epochs):
    options = tiny_training_options(data_root, max_epochs=max_epochs)
    options[options.index('train_dataloader.batch_size=4')] = \
        f'train_dataloader.batch_size={batch_size}'
    return options + SMALL_IMAGES + NO_VALIDATION + EQUIVALENCE_OPTIONS


def _state(path):
    return load_checkpoint_file(path)['state_dict']


@pytest.fixture(scope='module')
def equivalence_runs(tiny_coco, tmp_path_factory):
    """The same 6 iterations (3 epochs x 2): 1 process x batch 8, 2 x batch 4."""
    runs = {}
    for nproc, batch in ((1, 8), (2, 4)):
        tmp = tmp_path_factory.mktemp(f'ranks{nproc}')
        work_dir, probes = str(tmp / 'work'), str(tmp / 'probes')
        os.makedirs(probes)
        config = probe_config(tmp / 'cfg.py', DEMO_CONFIG)
        options = ['--cfg-options', *_options(tiny_coco, batch, max_epochs=3)]
        env = dict(DEX_PROBE_DIR=probes)
        if nproc == 1:
            cmd = [sys.executable, 'tools/train.py', config, '--work-dir', work_dir, *options]
        else:
            cmd = ['bash', 'tools/dist_train.sh', config, '2', '--work-dir', work_dir,
                   *options]
            env['PORT'] = '29541'
        result = run_tool(cmd, env=env, timeout=600)
        runs[nproc] = dict(work_dir=work_dir, probes=read_probes(probes),
                           exits=read_exit_records(probes), log=result.stdout + result.stderr)
    return runs


@pytest.mark.slow
def test_two_ranks_train_like_one_rank_with_the_same_total_batch(equivalence_runs):
    one, two = equivalence_runs[1]['probes'], equivalence_runs[2]['probes']
    assert [r['world_size'] for r in one] == [1]
    single = [(it['iter'], it['img_ids'], it['loss']) for it in one[0]['iters']]
    ranks = [r['iters'] for r in two]
    assert len(single) == 6 and all(len(r) == 6 for r in ranks)
    worst = 0.0
    for (step, img_ids, loss), it0, it1 in zip(single, *ranks):
        assert it0['iter'] == it1['iter'] == step
        # rank r gets indices r, r+2, ... of the 1-rank batch: same images per step
        assert sorted(it0['img_ids'] + it1['img_ids']) == sorted(img_ids)
        # each rank normalises by the global number of targets (mmdet reduce_mean),
        # so the rank mean of the losses is the 1-rank loss
        mean = (it0['loss'] + it1['loss']) / 2
        worst = max(worst, abs(mean - loss) / abs(loss))
    print(f'per-iteration loss, 2 ranks (mean) vs 1 rank: max relative difference {worst:.2e}')
    assert worst <= LOSS_RTOL

    a = _state(osp.join(equivalence_runs[1]['work_dir'], 'epoch_3.pth'))
    b = _state(osp.join(equivalence_runs[2]['work_dir'], 'epoch_3.pth'))
    assert a.keys() == b.keys()
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    # for scale: how far the last 2 iterations moved the parameters (1 rank)
    previous = _state(osp.join(equivalence_runs[1]['work_dir'], 'epoch_2.pth'))
    moved = max((a[k].float() - previous[k].float()).abs().max().item() for k in a)
    print(f'parameters after 6 iterations: max |2-rank - 1-rank| {diff:.2e} '
          f'(largest change over the last 2 iterations: {moved:.2e})')
    assert diff <= PARAM_ATOL


@pytest.mark.slow
def test_one_process_group_identical_replicas_rank0_writes(equivalence_runs):
    records = equivalence_runs[2]['probes']
    assert sorted(r['rank'] for r in records) == [0, 1]
    assert {(r['world_size'], r['backend']) for r in records} == {(2, 'gloo')}
    assert records[0]['param_sha256'] == records[1]['param_sha256']
    writes = {r['rank']: r['writes'] for r in records}
    assert writes[1] == [] and writes[0][-2:] == ['epoch_3.pth', 'last_checkpoint']
    work_dir = equivalence_runs[2]['work_dir']
    assert len(glob.glob(osp.join(work_dir, '**', '*.log'), recursive=True)) == 1


@pytest.mark.slow
def test_ranks_end_with_their_gloo_threads_joined(equivalence_runs):
    """tools/train.py destroys the process group before the interpreter shuts down:
    at exit each rank has the threads it had before the group existed. A gloo worker
    thread still alive then may drop a finished collective's tensors during shutdown,
    when it can no longer take the GIL, and abort the process (SIGABRT, "terminate
    called without an active exception") after a run that finished."""
    exits = equivalence_runs[2]['exits']
    assert [r['rank'] for r in exits] == [0, 1]
    for record in exits:
        assert record['threads_at_exit'] == record['threads_at_import'], record


def _metrics(work_dir):
    (path,) = glob.glob(osp.join(work_dir, '2*_*', '2*_*.json'))
    with open(path) as f:
        return {k: v for k, v in json.loads(f.readline()).items() if k.startswith('coco/')}


@pytest.mark.slow
def test_dist_test_matches_single_process(equivalence_runs, tiny_coco, tmp_path):
    checkpoint = osp.join(equivalence_runs[1]['work_dir'], 'epoch_3.pth')
    options = ['--cfg-options', *tiny_training_options(tiny_coco), *SMALL_IMAGES]
    one, two = str(tmp_path / 'one'), str(tmp_path / 'two')
    run_tool([sys.executable, 'tools/test.py', DEMO_CONFIG, checkpoint, '--work-dir', one,
              *options])
    result = run_tool(['bash', 'tools/dist_test.sh', DEMO_CONFIG, checkpoint, '2',
                       '--work-dir', two, *options], env=dict(PORT='29542'))
    assert 'GPU number: 2' in result.stdout + result.stderr  # 2 ranks (on CPU here)
    single = _metrics(one)
    assert single and _metrics(two) == single


def _bash(snippet, cwd):
    script = f'source {REPO_ROOT}/tools/dist_common.sh; {snippet}'
    return subprocess.run(['bash', '-c', script], cwd=cwd, capture_output=True, text=True,
                          timeout=30, env=dict(os.environ, AUTO_RESUME='1'))


def test_launch_scripts_resume_only_with_a_checkpoint(tmp_path):
    work_dir = tmp_path / 'run'
    assert _bash(f'resume_args {work_dir} --cfg-options a=1', tmp_path).stdout == ''
    work_dir.mkdir()
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'epoch_1.pth'))
    assert _bash(f'resume_args {work_dir}', tmp_path).stdout == '--resume\n'
    # an explicit --resume (with or without a path) and AUTO_RESUME=0 win
    assert _bash(f'resume_args {work_dir} --resume x.pth', tmp_path).stdout == ''
    assert _bash(f'resume_args {work_dir} --resume=x.pth', tmp_path).stdout == ''
    assert _bash(f'AUTO_RESUME=0 resume_args {work_dir}', tmp_path).stdout == ''
    # the work dir as tools/train.py picks it
    assert _bash('work_dir_of cfgs/a_b.py --amp --work-dir w1', tmp_path).stdout == 'w1\n'
    assert _bash('work_dir_of cfgs/a_b.py --work-dir=w2', tmp_path).stdout == 'w2\n'
    assert _bash('work_dir_of cfgs/a_b.py', tmp_path).stdout == 'work_dirs/a_b\n'


def test_launch_scripts_check_their_arguments(tmp_path):
    for script, args in (('dist_train.sh', ['cfg.py']), ('dist_test.sh', ['cfg.py', 'x']),
                         ('slurm_train.sh', ['p', 'j', 'cfg.py']),
                         ('slurm_test.sh', ['p', 'j', 'cfg.py'])):
        result = subprocess.run(['bash', osp.join(REPO_ROOT, 'tools', script), *args],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and 'usage: tools/' + script in result.stderr
    result = subprocess.run(['bash', osp.join(REPO_ROOT, 'tools', 'dist_train.sh'),
                             'cfg.py', 'two'], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and 'positive integer' in result.stderr


def _fake(tmp_path, name):
    """An executable that prints its arguments and MASTER_PORT, one per line."""
    path = tmp_path / name
    path.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n'
                    'echo "MASTER_PORT=${MASTER_PORT:-}"\n')
    path.chmod(0o755)
    return str(path)


def test_launch_script_command_lines(tmp_path):
    """What the scripts hand to srun and torchrun (fakes that print their arguments)."""
    fake_python = _fake(tmp_path, 'python')
    _fake(tmp_path, 'srun')
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(('SLURM_', 'MASTER_', 'GPUS', 'PORT', 'AUTO_RESUME'))}
    env.update(PATH=f'{tmp_path}{os.pathsep}{env["PATH"]}', PYTHON=fake_python)
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'epoch_3.pth'))

    def run(script, *args, **extra):
        result = subprocess.run(['bash', osp.join(REPO_ROOT, 'tools', script), *args],
                                capture_output=True, text=True, timeout=30,
                                env=dict(env, **extra))
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    # 16 GPUs on nodes of 8, inside an sbatch allocation: 2 nodes, per-job port, resume
    out = run('slurm_train.sh', 'gpu', 'job', 'cfg.py', str(work_dir), '--amp',
              GPUS='16', GPUS_PER_NODE='8', SLURM_JOB_ID='123456')
    assert out[:10] == ['-p', 'gpu', '--job-name=job', '--gres=gpu:8', '--ntasks-per-node=8',
                        '--ntasks=16', '--cpus-per-task=5', '--kill-on-bad-exit=1',
                        fake_python, '-u']
    assert out[10:] == [osp.join(REPO_ROOT, 'tools', 'train.py'), 'cfg.py',
                        f'--work-dir={work_dir}', '--resume', '--amp', '--launcher=slurm',
                        f'MASTER_PORT={20000 + 123456 % 20000}']
    # fewer GPUs than a node has; CPU tasks; no checkpoint in the work dir: no --resume
    out = run('slurm_train.sh', 'p', 'j', 'cfg.py', str(tmp_path / 'new'), GPUS='4')
    assert '--gres=gpu:4' in out and '--ntasks-per-node=4' in out and '--resume' not in out
    out = run('slurm_test.sh', 'p', 'j', 'cfg.py', 'x.pth', GPUS='2', GPUS_PER_NODE='0',
              SRUN_ARGS='--time=5 --qos=low')
    assert not any(a.startswith(('--gres', '--ntasks-per-node')) for a in out)
    assert out[6:8] == ['--time=5', '--qos=low'] and out[-2:] == ['--launcher=slurm',
                                                                  'MASTER_PORT=']
    # torchrun: the work dir from --work-dir, resume, the launcher last
    out = run('dist_train.sh', 'cfg.py', '2', '--work-dir', str(work_dir), PORT='29999')
    assert out == ['-m', 'torch.distributed.run', '--nnodes=1', '--node_rank=0',
                   '--master_addr=127.0.0.1', '--master_port=29999', '--nproc_per_node=2',
                   osp.join(REPO_ROOT, 'tools', 'train.py'), 'cfg.py', '--resume',
                   '--work-dir', str(work_dir), '--launcher', 'pytorch', 'MASTER_PORT=']
    out = run('dist_train.sh', 'cfg.py', '2', '--work-dir', str(work_dir), AUTO_RESUME='0')
    assert '--resume' not in out
