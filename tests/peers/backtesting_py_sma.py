#!/usr/bin/env python3
"""backtesting.py 0.6.6 running sma-cross with qtm's exact semantics; prints trades and final equity as JSON.
Usage: backtesting_py_sma.py CSV flip|long_only COMMISSION [next-open|close]"""
import sys, json, warnings
import pandas as pd
from backtesting import Backtest, Strategy
warnings.filterwarnings("ignore")
path, mode, comm = sys.argv[1], sys.argv[2], float(sys.argv[3])
on_close = len(sys.argv) > 4 and sys.argv[4] == "close"
df = pd.read_csv(path); df.index = pd.to_datetime(df.pop("ts"), unit="s")
df.columns = ["Open", "High", "Low", "Close", "Volume"]
def SMA(x, n): return pd.Series(x).rolling(n).mean().values
class SmaCross(Strategy):
    def init(self):
        self.f = self.I(SMA, self.data.Close, 10); self.s = self.I(SMA, self.data.Close, 30)
    def next(self):
        f0, f1, s0, s1 = self.f[-1], self.f[-2], self.s[-1], self.s[-2]
        pos = self.position.size
        if f1 <= s1 and f0 > s0 and pos <= 0:
            if pos < 0: self.position.close()
            self.buy()
        elif f1 >= s1 and f0 < s0 and pos >= 0:
            if pos > 0: self.position.close()
            if mode == "flip": self.sell()
bt = Backtest(df, SmaCross, cash=10_000, commission=comm, trade_on_close=on_close)
st = bt.run()
t = st["_trades"]
out = []
for _, r in t.iterrows():
    out.append([int(r.EntryTime.value // 10**9), None if pd.isna(r.ExitTime) else int(r.ExitTime.value // 10**9), float(r.EntryPrice), None if pd.isna(r.ExitPrice) else float(r.ExitPrice), int(r.Size), float(r.PnL)])
print(json.dumps({"equity": float(st["Equity Final [$]"]), "trades": out}))
