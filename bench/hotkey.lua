-- Hot-key workload for bench/parallel.sh (WORKLOAD=hotkey): a workload
-- built to conflict. Prepared like sysbench's OLTP scripts (oltp_common:
-- --tables tables of --table-size rows); each event is one transaction
-- that updates, in every one of the first --hot-tables tables, one of the
-- rows with ids 1..--hot-rows, chosen at random:
--
--   BEGIN
--   UPDATE sbtest1 SET k = k + 1, c = '<random>' WHERE id = <1..hot_rows>
--   UPDATE sbtest2 SET k = k + 1, c = '<random>' WHERE id = <1..hot_rows>
--   COMMIT
--
-- So every thread writes the same few rows: a parallel applier sees long
-- chains of changes to one key (the same worker, in order, for ours; for
-- MariaDB's optimistic replica, transactions that conflict and retry).
-- Tables are always locked in the same order, so the upstream does not
-- deadlock.
--
-- Usage: sysbench bench/hotkey.lua --tables=8 --table-size=20000 prepare
--        sysbench bench/hotkey.lua --tables=8 --hot-tables=2 --hot-rows=16 --threads=8 --time=20 run

require("oltp_common")

sysbench.cmdline.options.hot_rows = {"Rows of each hot table the updates go to (ids 1..N)", 16}
sysbench.cmdline.options.hot_tables = {"Tables the updates go to (sbtest1..sbtestN)", 2}

function prepare_statements()
end

function event()
   con:query("BEGIN")
   for t = 1, math.min(sysbench.opt.hot_tables, sysbench.opt.tables) do
      con:query(string.format("UPDATE sbtest%d SET k = k + 1, c = '%s' WHERE id = %d",
         t, get_c_value(), sysbench.rand.uniform(1, sysbench.opt.hot_rows)))
   end
   con:query("COMMIT")
end
