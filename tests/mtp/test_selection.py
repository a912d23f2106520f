"""MaxVol / grade / select-add checks with numbers worked out by hand (pure numpy, no motep)."""

import numpy as np
import pytest

from aiida_mlcampaign.formats.frames import Frame
from aiida_mlcampaign.mtp.selection import (
    REGULARISER,
    grades,
    maxvol,
    min_distance_filter,
    min_interatomic_distance,
    select_add,
    select_by_grade,
)

T = 1e-5  # default init_threshold


def test_two_parameter_case_by_hand():
    # Rows r0 = (1, 0), r1 = (0, 1), r2 = (2, 0.1), r3 = (0.1, 0.1); start A = 1e-5 I, inv(A) = 1e5 I.
    #
    # Round 1: c = r inv(A) = r * 1e5 -> r0 (1e5, 0), r1 (0, 1e5), r2 (2e5, 1e4), r3 (1e4, 1e4).
    #   Largest |c_j| = 2e5: r2 replaces active row 0.  A = [[2, 0.1], [0, 1e-5]], det = 2e-5,
    #   inv(A) = [[0.5, -5000], [0, 1e5]]  (check: [2, 0.1] @ inv = [1, -10000 + 10000] = [1, 0]).
    # Round 2: r0 -> (0.5, -5000), r1 -> (0, 1e5), r3 -> (0.05, -500 + 1e4 = 9500).
    #   Largest 1e5: r1 replaces the regulariser row 1.  A = [[2, 0.1], [0, 1]], det = 2,
    #   inv(A) = [[0.5, -0.05], [0, 1]].
    # Round 3: r0 -> (0.5, -0.05), r3 -> (0.05, -0.005 + 0.1 = 0.095): max 0.5 <= 1, stop.
    # So r0 = (1, 0) is *not* taken: (r2, r1) spans the larger area (|det| 2 versus 1 for (r0, r1);
    # the other pairs give 0.1, 0.19, 0.1), and grades are r0 0.5, r1 1, r2 1, r3 0.095.
    rows = np.array([[1, 0], [0, 1], [2, 0.1], [0.1, 0.1]])
    active = maxvol(rows)
    assert active.indices.tolist() == [2, 1]
    assert active.selected.tolist() == [1, 2]
    assert active.n_regularisers == 0
    assert active.swaps == 2
    np.testing.assert_allclose(active.matrix, [[2, 0.1], [0, 1]])
    np.testing.assert_allclose(active.inverse, [[0.5, -0.05], [0, 1]], atol=1e-15)
    np.testing.assert_allclose(active.grades(rows), [0.5, 1.0, 1.0, 0.095], rtol=1e-12)
    np.testing.assert_allclose(grades(active.inverse, rows), [0.5, 1.0, 1.0, 0.095], rtol=1e-12)
    # A single row as a 1-d vector is accepted.
    np.testing.assert_allclose(grades(active.inverse, [4.0, 0.0]), [2.0])


def test_intermediate_state_after_one_swap():
    # max_swaps=1 stops after round 1 above: A = [[2, 0.1], [0, 1e-5]], inv(A) = [[0.5, -5000], [0, 1e5]].
    active = maxvol([[1, 0], [0, 1], [2, 0.1], [0.1, 0.1]], max_swaps=1)
    assert active.indices.tolist() == [2, REGULARISER]
    np.testing.assert_allclose(active.inverse, [[0.5, -5000], [0, 1e5]], rtol=1e-12)
    # r3 = (0.1, 0.1): c = (0.05, 9500) -> grade 9500, i.e. "far outside" while row 1 is tiny.
    np.testing.assert_allclose(active.grades([[0.1, 0.1]]), [9500.0], rtol=1e-12)


def test_rank_deficient_rows_work_thanks_to_regulariser():
    # (1, 1) and (2, 2) span one direction. Round 1: c = 1e5 (1, 1) and 1e5 (2, 2); the largest,
    # 2e5, is first met in column 0: (2, 2) replaces row 0.  A = [[2, 2], [0, 1e-5]],
    # inv(A) = [[0.5, -1e5], [0, 1e5]].  (1, 1) -> (0.5, -1e5 + 1e5 = 0): grade 0.5, stop.
    active = maxvol([[1, 1], [2, 2]])
    assert active.indices.tolist() == [1, REGULARISER]
    np.testing.assert_allclose(active.inverse, [[0.5, -1e5], [0, 1e5]], rtol=1e-12)
    g = active.grades([[1, 1], [2, 2], [3, 3], [0, 1], [1, -1]])
    # (3, 3) = 1.5 x (2, 2): 1.5.  (0, 1) -> (0, 1e5).  (1, -1) -> (0.5, -1e5 - 1e5): 2e5.
    np.testing.assert_allclose(g, [0.5, 1.0, 1.5, 1e5, 2e5], rtol=1e-12)


def test_fewer_rows_than_parameters():
    # One row (1, 2, 3): c = 1e5 (1, 2, 3), the largest in column 2, so it replaces row 2.
    active = maxvol([[1, 2, 3]])
    assert active.indices.tolist() == [REGULARISER, REGULARISER, 0]
    np.testing.assert_allclose(active.matrix, [[T, 0, 0], [0, T, 0], [1, 2, 3]])
    np.testing.assert_allclose(active.grades([[1, 2, 3], [0.5, 1, 1.5]]), [1.0, 0.5], rtol=1e-10)
    # Anything off the spanned line is graded against the tiny regulariser rows: huge.
    assert active.grades([[1, 0, 0]])[0] > 1e4
    # Zero rows: nothing is selected, A stays 1e-5 I.
    empty = maxvol(np.zeros((0, 3)))
    assert empty.indices.tolist() == [REGULARISER] * 3
    np.testing.assert_allclose(empty.inverse, np.eye(3) / T)


def test_random_rows_training_grades_at_most_one_and_active_exactly_one():
    rng = np.random.default_rng(7)
    for m, n in [(40, 6), (5, 8), (30, 30)]:
        rows = rng.normal(size=(m, n)) * rng.uniform(0.1, 10, size=(m, 1))
        active = maxvol(rows)
        g = active.grades(rows)
        assert g.max() <= 1.0000001 + 1e-9
        selected = active.selected
        assert len(selected) == min(m, n)
        np.testing.assert_allclose(g[selected], 1.0, rtol=1e-9)
        # inverse consistent with matrix
        np.testing.assert_allclose(active.matrix @ active.inverse, np.eye(n), atol=1e-8)
        # the active rows are the rows they claim to be
        for position, label in enumerate(active.indices):
            if label != REGULARISER:
                np.testing.assert_array_equal(active.matrix[position], rows[label])


def test_maxvol_continues_from_init_without_modifying_it():
    base = maxvol([[1, 0], [0, 1]])
    before = base.matrix.copy()
    more = maxvol([[3, 0]], init=base, labels=[10])
    np.testing.assert_array_equal(base.matrix, before)
    # (3, 0) against A = I: grade 3, replaces row 0 (label 0).
    assert more.indices.tolist() == [10, 1]
    with pytest.raises(ValueError, match='swap_threshold'):
        maxvol([[1.0]], swap_threshold=1.0)
    with pytest.raises(ValueError, match='columns'):
        maxvol([[1.0, 2.0, 3.0]], init=base)


def test_select_add_by_hand():
    # Training rows (1, 0), (0, 1) -> A = I (two swaps from the regulariser).
    # Candidates: c0 (0.5, 0.5), c1 (3, 0), c2 (3, 0) duplicate of c1, c3 (0, 1.05), c4 (0, 2).
    # Against A = I the grades are 0.5, 3, 3, 1.05, 2. Threshold 1.1:
    #   swap 1: c1 (3 in column 0, first of the tie with c2) replaces (1, 0); A = diag(3, 1);
    #           (1, 0) goes back to the pool with c = (1/3, 0); c2 now (1, 0): grade 1 - never again.
    #   swap 2: c4 (2 in column 1) replaces (0, 1); A = diag(3, 2).
    #   then: c0 (1/6, 1/4), c2 (1, 0), c3 (0, 0.525), (1, 0) -> 1/3, (0, 1) -> 1/2: stop.
    # Selected: c1 (grade 3) and c4 (grade 2), highest first; c3 (1.05 < 1.1) is not.
    train = [[1, 0], [0, 1]]
    candidates = [[0.5, 0.5], [3, 0], [3, 0], [0, 1.05], [0, 2]]
    assert select_add(train, candidates).tolist() == [1, 4]
    assert select_add(train, candidates, budget=1).tolist() == [1]
    assert select_add(train, candidates, budget=0).tolist() == []
    # With threshold 1.01 c3 would beat 1.01 against A = I, but after c4 entered its grade is 0.525.
    assert select_add(train, candidates, select_threshold=1.01).tolist() == [1, 4]
    # Only c3 offered: 1.05 > 1.01 enters, 1.05 < 1.1 does not.
    assert select_add(train, [[0, 1.05]], select_threshold=1.01).tolist() == [0]
    assert select_add(train, [[0, 1.05]]).tolist() == []
    # Empty training set: the regulariser alone; both directions are new.
    assert sorted(select_add(np.zeros((0, 2)), [[1, 0], [0, 1], [1, 0]]).tolist()) == [0, 1]


def test_select_add_budget_keeps_highest_grades():
    train = np.eye(3)
    # Grades against A = I: 5, 2, 4 (each in its own column, so all three enter).
    candidates = [[5, 0, 0], [0, 2, 0], [0, 0, 4]]
    assert select_add(train, candidates).tolist() == [0, 2, 1]
    assert select_add(train, candidates, budget=2).tolist() == [0, 2]


def test_select_add_duplicates_not_selected_twice():
    rng = np.random.default_rng(3)
    train = rng.normal(size=(10, 4))
    far = rng.normal(size=(1, 4)) * 50
    candidates = np.vstack([far, far, far * (1 + 1e-12)])
    chosen = select_add(train, candidates)
    assert len(chosen) == 1


def test_select_by_grade_masks():
    g = [0.5, 2.0, 2.1, 2.2, 10.0, 10.5, 3.0, 50.0]
    result = select_by_grade(g, select=2.1, break_=10.0)
    # strictly above 2.1 is selected (2.1 itself is not), above 10 breaks and is also selected
    assert result.selected.tolist() == [False, False, False, True, True, True, True, True]
    assert result.breaking.tolist() == [False, False, False, False, False, True, False, True]
    assert result.reliable.tolist() == [True, True, True, False, False, False, False, False]
    assert result.first_break == 5
    assert result.selected_until_break.tolist() == [False, False, False, True, True, True, False, False]
    no_break = select_by_grade(g, select=2.1, break_=0)
    assert no_break.first_break is None and not no_break.breaking.any()
    with pytest.raises(ValueError):
        select_by_grade(g, select=3.0, break_=2.0)


def test_min_interatomic_distance_and_filter():
    # Simple cubic a = 2.5: nearest neighbour = own periodic image at 2.5.
    assert min_interatomic_distance(np.eye(3) * 2.5, [[0, 0, 0]]) == pytest.approx(2.5)
    # Without periodicity a single atom has no neighbour.
    assert min_interatomic_distance(np.eye(3) * 2.5, [[0, 0, 0]], pbc=False) == np.inf
    # Two atoms 0.2 apart across the boundary of a 10 Å box (positions 0.1 and 9.9).
    cell = np.eye(3) * 10
    assert min_interatomic_distance(cell, [[0.1, 5, 5], [9.9, 5, 5]]) == pytest.approx(0.2)
    assert min_interatomic_distance(cell, [[0.1, 5, 5], [9.9, 5, 5]], pbc=False) == pytest.approx(9.8)
    # Strongly skewed cell: a = (1, 0, 0), b = (10, 1, 0) is the same lattice as b' = (0, 1, 0):
    skewed = [[1, 0, 0], [10, 1, 0], [0, 0, 1]]
    assert min_interatomic_distance(skewed, [[0, 0, 0]]) == pytest.approx(1.0)
    assert min_interatomic_distance(skewed, [[0, 0, 0], [0.5, 0.5, 0.5]]) == pytest.approx(np.sqrt(0.75))

    frames = [
        Frame(['Cu'], np.eye(3) * 2.5, [[0, 0, 0]]),
        Frame(['Cu', 'Cu'], cell, [[0.1, 5, 5], [9.9, 5, 5]]),
    ]
    assert min_distance_filter(frames, 1.0).tolist() == [True, False]
    assert min_distance_filter([f.to_ase() for f in frames], 1.0).tolist() == [True, False]
    assert min_distance_filter([2.0, 0.5, 1.0], 1.0).tolist() == [True, False, True]
    assert min_distance_filter(np.array([2.0, 0.5]), 1.0).tolist() == [True, False]
