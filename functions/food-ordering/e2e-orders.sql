INSERT INTO orders (customer, items, total) VALUES ('e2e', '[{"dish":"pad thai","qty":1}]', 12.50)
