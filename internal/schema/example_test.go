package schema_test

import (
	"fmt"

	"github.com/dmworker/dmworker/internal/schema"
)

func Example() {
	tr := schema.New()
	// Seed from the upstream, then follow its DDL.
	_ = tr.CreateFromSQL("shop", "CREATE TABLE `orders` (`id` int(11) NOT NULL, `total` decimal(10,2) DEFAULT NULL, PRIMARY KEY (`id`))")
	if _, err := tr.Apply("shop", "ALTER TABLE orders ADD COLUMN note varchar(64) AFTER id"); err != nil {
		fmt.Println(err)
	}
	d, _ := tr.Table("shop", "orders")
	for _, c := range d.Columns {
		fmt.Println(c.Name, c.Type, c.Nullable)
	}
	fmt.Println("primary key", d.PrimaryKey)

	// Split a multi-table statement and render each part for a routed
	// downstream.
	stmts, _ := schema.Split("shop", "DROP TABLE IF EXISTS orders, shop_old.orders")
	for _, s := range stmts {
		q, _ := s.Render(func(sch, tbl string) (string, string) { return "all_" + sch, tbl })
		fmt.Println(s.Kind, s.Table, q)
	}
	// Output:
	// id int(11) false
	// note varchar(64) true
	// total decimal(10,2) true
	// primary key [0]
	// drop table `shop`.`orders` DROP TABLE IF EXISTS `all_shop`.`orders`
	// drop table `shop_old`.`orders` DROP TABLE IF EXISTS `all_shop_old`.`orders`
}
