"""The scikit-learn contenders of benchmarks/quality.py, and the column treatment they get.

`hand_cleaned` is what a data scientist would do to an exported table by hand before
scikit-learn sees it: drop the row-number column ("Unnamed: ..."), ID-like text columns (every
value distinct) and constant columns; parse numbers stored as text (thousands separators
removed, stray strings such as "n/a", "?", "-" become missing); booleans become 0/1; every
other text column becomes a pandas 'category'. Both contenders fit on the rows they are given
(quality.py gives them train + val) and hold out their own early-stopping fraction from them.

Run as a script, it is one pytabkit contender in a process of its own, so that its time, like
mlpflow's, runs from the interpreter's start (imports, reading the CSV) to its test scores:
`python quality_contenders.py MODEL CSV TARGET TASK SEED ROWS.npz` (MODEL realmlp or tabm;
ROWS.npz holds the `fit` and `test` row positions) prints {"metrics", "fit_seconds"} as JSON.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np
import pandas as pd

HGB_MAX_LEVELS = 255  # HistGradientBoosting's native categories: at most max_bins levels


def hand_cleaned(features: pd.DataFrame) -> pd.DataFrame:
    """The feature columns as a user would clean them (see the module docstring)."""
    x = features.drop(columns=[c for c in features.columns if str(c).startswith("Unnamed:")])
    for name in list(x.columns):
        column = x[name]
        if column.nunique(dropna=False) <= 1:
            x = x.drop(columns=name)
        elif column.dtype == bool:
            x[name] = column.astype(np.int8)
        elif column.dtype == object or isinstance(column.dtype, pd.StringDtype):
            text = column.dropna().astype(str)
            parsed = pd.to_numeric(text.str.replace(",", "", regex=False), errors="coerce")
            if len(text) and parsed.notna().mean() >= 0.9:
                x[name] = pd.to_numeric(column.astype(str).str.replace(",", ""), errors="coerce")
            elif len(text) == len(x) and text.nunique() == len(x):
                x = x.drop(columns=name)  # an ID
            else:
                x[name] = column.astype("category")
    return x


def scores(task: str, y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """binary: roc_auc (and acc); multiclass: acc and macro one-vs-rest roc_auc; regression: r2.

    `predicted`: class probabilities (columns in class-index order), or values for regression.
    """
    from sklearn.metrics import accuracy_score, r2_score, roc_auc_score

    if task == "regression":
        return {"r2": float(r2_score(y_true, predicted))}
    acc = float(accuracy_score(y_true, np.argmax(predicted, axis=1)))
    if task == "binary":
        return {"roc_auc": float(roc_auc_score(y_true, predicted[:, 1])), "acc": acc}
    auc = roc_auc_score(y_true, predicted, multi_class="ovr", average="macro")
    return {"acc": acc, "roc_auc": float(auc)}


PRIMARY = {"binary": "roc_auc", "multiclass": "acc", "regression": "r2"}


def _codes(y_train: np.ndarray, y_test: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Class indices 0..K-1 in sorted class order (values unchanged for regression)."""
    if task == "regression":
        return y_train.astype(float), y_test.astype(float)
    classes, train = np.unique(y_train, return_inverse=True)
    return train, np.searchsorted(classes, y_test)


def _target_encoded(x_train, y_train, x_test, task: str, seed: int):
    """Categories with more levels than HGB takes natively -> scikit-learn's TargetEncoder
    (cross-fitted on train), as one would work around that limit."""
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.preprocessing import TargetEncoder

    wide = [c for c in x_train.select_dtypes("category") if x_train[c].nunique() > HGB_MAX_LEVELS]
    if not wide:
        return x_train, x_test
    kind = "continuous" if task == "regression" else task
    folds = KFold if task == "regression" else StratifiedKFold
    encoder = TargetEncoder(target_type=kind, cv=folds(5, shuffle=True, random_state=seed))
    as_text = {c: x_train[c].astype(object) for c in wide}
    train_codes = encoder.fit_transform(pd.DataFrame(as_text), y_train)
    test_codes = encoder.transform(x_test[wide].astype(object))
    names = [f"{c}_te{j}" for c in wide for j in range(train_codes.shape[1] // len(wide))]
    encoded = [
        pd.concat([x.drop(columns=wide), pd.DataFrame(codes, columns=names, index=x.index)], axis=1)
        for x, codes in ((x_train, train_codes), (x_test, test_codes))
    ]
    return encoded[0], encoded[1]


def hgb_fit_score(x_train, y_train, x_test, y_test, task: str, seed: int):
    """HistGradientBoosting with native categories (from the 'category' dtype), default
    settings (early stopping on 10% of its rows when it gets more than 10,000).
    Returns (primary score, every score, fit + predict seconds)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    y_train, y_test = _codes(np.asarray(y_train), np.asarray(y_test), task)
    start = time.perf_counter()
    x_train, x_test = _target_encoded(x_train, y_train, x_test, task, seed)
    kind = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
    model = kind(categorical_features="from_dtype", random_state=seed).fit(x_train, y_train)
    predicted = model.predict(x_test) if task == "regression" else model.predict_proba(x_test)
    seconds = time.perf_counter() - start
    metrics = scores(task, y_test, predicted)
    return metrics[PRIMARY[task]], metrics, seconds


def mlp_pipeline(x: pd.DataFrame, task: str, seed: int):
    """ColumnTransformer (numeric: median imputation with indicators + standardization;
    categorical: "missing" + one-hot, levels under 5 rows pooled) -> MLP (128, 64) with early
    stopping. Regression standardizes the target too (TransformedTargetRegressor)."""
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    categorical = list(x.select_dtypes(["category", "object"]).columns)
    numeric = [c for c in x.columns if c not in categorical]
    columns = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True),
                                  StandardScaler()), numeric),
            ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                                  OneHotEncoder(handle_unknown="ignore", min_frequency=5)),
             categorical),
        ]
    )  # fmt: skip
    settings = {"hidden_layer_sizes": (128, 64), "early_stopping": True, "max_iter": 200}
    if task != "regression":
        return make_pipeline(columns, MLPClassifier(**settings, random_state=seed))
    network = make_pipeline(columns, MLPRegressor(**settings, random_state=seed))
    return TransformedTargetRegressor(regressor=network, transformer=StandardScaler())


def mlp_fit_score(x_train, y_train, x_test, y_test, task: str, seed: int):
    """The MLP pipeline: (primary score, every score, fit + predict seconds)."""
    from sklearn.exceptions import ConvergenceWarning

    y_train, y_test = _codes(np.asarray(y_train), np.asarray(y_test), task)
    as_object = {c: x_train[c].astype(object) for c in x_train.select_dtypes("category")}
    x_train = x_train.assign(**as_object)
    x_test = x_test.assign(**{c: x_test[c].astype(object) for c in as_object})
    model = mlp_pipeline(x_train, task, seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    predicted = model.predict(x_test) if task == "regression" else model.predict_proba(x_test)
    seconds = time.perf_counter() - start
    metrics = scores(task, y_test, predicted)
    return metrics[PRIMARY[task]], metrics, seconds


def pytabkit_fit_score(model: str, x_train, y_train, x_test, y_test, task: str, seed: int):
    """pytabkit's tuned defaults, `model` "realmlp" (RealMLP-TD) or "tabm" (TabM-D), on CPU:
    (primary score, every score, fit + predict seconds). They take pandas categories as they
    are and hold out their own validation fifth; missing numbers get the train median first
    (neither takes NaN)."""
    import pytabkit

    kinds = {
        ("realmlp", False): pytabkit.RealMLP_TD_Classifier,
        ("realmlp", True): pytabkit.RealMLP_TD_Regressor,
        ("tabm", False): pytabkit.TabM_D_Classifier,
        ("tabm", True): pytabkit.TabM_D_Regressor,
    }
    y_train, y_test = _codes(np.asarray(y_train), np.asarray(y_test), task)
    start = time.perf_counter()
    numeric = x_train.select_dtypes("number").columns
    medians = x_train[numeric].median()
    x_train, x_test = x_train.fillna(medians), x_test.fillna(medians)
    estimator = kinds[model, task == "regression"](device="cpu", random_state=seed, verbosity=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(x_train, y_train)
        predicted = (
            estimator.predict(x_test) if task == "regression" else estimator.predict_proba(x_test)
        )
    seconds = time.perf_counter() - start
    metrics = scores(task, y_test, np.asarray(predicted))
    return metrics[PRIMARY[task]], metrics, seconds


def pytabkit_process(argv: list[str]) -> None:
    """The script entry (module docstring): hand-clean the CSV, fit and score one pytabkit
    model on the given rows, print the result."""
    model, csv, target, task, seed, rows = argv
    table = pd.read_csv(csv)
    split = np.load(rows)
    x = hand_cleaned(table.drop(columns=[target]))
    values = table[target].to_numpy()
    fit, test = split["fit"], split["test"]
    _, metrics, seconds = pytabkit_fit_score(
        model, x.iloc[fit], values[fit], x.iloc[test], values[test], task, int(seed)
    )
    print(json.dumps({"metrics": metrics, "fit_seconds": seconds}))


if __name__ == "__main__":
    pytabkit_process(sys.argv[1:])
